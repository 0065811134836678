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

# Both programs: the demo runs target/debug/certagent-bank.
cargo build --quiet --locked --workspace --bins
exec target/debug/certagent demo
