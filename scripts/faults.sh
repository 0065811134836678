#!/usr/bin/env bash
# A fault at every PKCS#11 call of a renewal, an enrolment and a logon,
# pulled and killed (tests/faults.rs through the forwarding module in
# tests/fault-module), every index of all three; prints the table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
certagent_setup tests
cargo build --quiet --locked --workspace
CERTAGENT_FAULT_ENROLL_STRIDE=1 cargo test --locked --test faults -- --nocapture --test-threads=1 2>&1 |
    grep -E "recovered|test result|panicked"
