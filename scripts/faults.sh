#!/usr/bin/env bash
# A fault at every PKCS#11 call, pulled and killed, through the forwarding
# module in tests/fault-module: the renewal, the enrolment and the logon on
# SoftHSM (tests/faults.rs; CI runs these whole too), then the two renewals
# on the emulated OpenPGP card at every call (tests/openpgp.rs; CI runs
# their first and last index and a moving dozen). Prints the table. About
# an hour on two cores, most of it the card's 2 x (208 + 162) fresh cards.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
certagent_setup tests
cargo build --quiet --locked --workspace
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
CERTAGENT_FAULT_STRIDE=1 CERTAGENT_FAULT_ENROLL_STRIDE=1 CERTAGENT_FAULT_CARD_STRIDE=1 \
    cargo nextest run --locked --no-fail-fast --no-capture \
    -E 'binary(faults) | (binary(openpgp) & test(a_fault_at))' 2>&1 |
    grep -E "recovered|never fired|panicked|PASS|FAIL|Summary"
