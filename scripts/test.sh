#!/usr/bin/env bash
# The whole test suite, as CI runs it: installs what it needs, then checks
# formatting, lints, and runs every test (unit and integration, on real
# SoftHSM and kryoptic tokens) with cargo-nextest, one process per test.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
certagent_setup tests
# A run from a fresh clone gains nothing from incremental compilation, whose
# caches are gigabytes on disk.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    echo "installing cargo-nextest (one process per test: SoftHSM needs it)" >&2
    cargo install --locked cargo-nextest
fi

# The whole workspace: the agent (root package), the reference bank (bank/)
# and the PKCS#11 modules the tests load, cdylibs which only `cargo build`
# makes: the forwarding module of the fault and round-trip tests
# (tests/fault-module) and the kryoptic soft token (tests/kryoptic-module,
# kryoptic-lib from crates.io; about a minute on two cores the first time).
# The README's first command as a fresh machine runs it: without the
# test-only build needs installed above (hidden in a mount namespace).
scripts/fresh-demo.sh
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo build --workspace --locked
cargo nextest run --workspace --locked --no-fail-fast --profile ci
scripts/package-test.sh
# certagent for Windows: cross-built, then tested under Wine (tests/windows.rs,
# which the run above leaves to this one).
scripts/windows.sh test
# Last: every parser of hostile bytes under libFuzzer for a bounded time
# (FUZZ_SECONDS a target, 30 by default); a crash fails the run.
scripts/fuzz.sh
