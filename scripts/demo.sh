#!/usr/bin/env bash
# certagent's whole story in a few seconds: `certagent demo` makes a fresh
# SoftHSM token in a temporary directory, starts the reference bank (the
# certagent-bank program built next to certagent), renews a certificate that
# expires in 20 days over EST with mutual TLS, obtains a new one for an
# expired certificate with a one-time password, and cleans up after itself.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
certagent_setup

# Only the two programs the demo runs (certagent, and target/debug/certagent-bank
# beside it): never the test-only members of the workspace (the emulated
# OpenPGP card and the kryoptic token need libclang and OpenSSL's headers,
# which only the test command installs).
cargo build --quiet --locked -p certagent -p certagent-bank --bins
# (CARGO_TARGET_DIR, where set, is where cargo put them.)
exec "${CARGO_TARGET_DIR:-target}/debug/certagent" demo
