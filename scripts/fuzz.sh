#!/usr/bin/env bash
# Fuzz every parser of hostile bytes with cargo-fuzz (libFuzzer), each for a
# bounded time, one target after another.
#
#   scripts/fuzz.sh [TARGET...]
#
# FUZZ_SECONDS     seconds per target (default 30)
# FUZZ_SANITIZER   cargo fuzz's --sanitizer: none (default; the code under
#                  test is safe Rust, built with debug assertions, so
#                  overflows and panics are found, several times faster) or
#                  address
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz (a
# pinned version) when it is missing. The targets and their seed corpus are
# in fuzz/; what libFuzzer adds to fuzz/corpus/TARGET/ is not committed.
# Prints the executions per target and exits non-zero when any target
# crashed (the input is in fuzz/artifacts/TARGET/: make it a regression test
# beside the code, then fix).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
seconds=${FUZZ_SECONDS:-30}
sanitizer=${FUZZ_SANITIZER:-none}

cd "$(dirname "$0")/.."

if ! cargo +nightly --version >/dev/null 2>&1; then
    echo "$0: the nightly toolchain is missing (cargo +nightly); install it with rustup" >&2
    exit 1
fi
if [ "$(cargo fuzz --version 2>/dev/null | awk '{print $2}')" != "$CARGO_FUZZ_VERSION" ]; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
if [ ${#targets[@]} -eq 0 ]; then
    echo "$0: no fuzz targets found" >&2
    exit 1
fi

echo "== building ${#targets[@]} targets (sanitizer: $sanitizer)"
cargo +nightly fuzz build -s "$sanitizer"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
failed=()
summary=()
for t in "${targets[@]}"; do
    echo "== $t: ${seconds}s"
    mkdir -p "fuzz/corpus/$t"
    status=0
    cargo +nightly fuzz run -s "$sanitizer" "$t" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=4096 \
        -print_final_stats=1 </dev/null >"$logs/$t.log" 2>&1 || status=$?
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$t.log" | tail -1)
    if [ -z "$execs" ]; then
        # A crash ends the run before the final stats: take libFuzzer's last #N.
        execs=$(grep -oE '^#[0-9]+' "$logs/$t.log" | tail -1 | tr -d '#')
    fi
    if [ "$status" -ne 0 ]; then
        failed+=("$t")
        summary+=("$(printf '%-16s %12s  CRASH (exit %s)' "$t" "${execs:-?}" "$status")")
        echo "-- $t crashed; the end of its log:"
        tail -40 "$logs/$t.log"
        ls -1 "fuzz/artifacts/$t" 2>/dev/null | sed 's/^/   artifact: /' || true
    else
        summary+=("$(printf '%-16s %12s  ok' "$t" "${execs:-?}")")
    fi
done

echo
printf '%-16s %12s  %s\n' target executions result
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "$0: crashed: ${failed[*]}" >&2
    exit 1
fi
