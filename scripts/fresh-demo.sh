#!/usr/bin/env bash
# The README's first command as a fresh machine runs it: scripts/demo.sh in
# a private mount namespace where the test-only build needs are hidden
# (libclang for bindgen, OpenSSL's and SQLite's headers: the emulated
# OpenPGP card and the kryoptic token need them, the demo must not), with a
# target directory of its own so nothing built by the tests helps it.
# scripts/test.sh runs it; a demo that needs what only the test command
# installs fails here, as it would for a new user.
set -euo pipefail
cd "$(dirname "$0")/.."
# A fresh clone has no target/ yet: the demo's log goes there. What an
# earlier run built would help this one, so it starts from nothing, and it
# removes its build on success (gigabytes the rest of the run may need).
mkdir -p target
rm -rf target/fresh-demo
if [ "$(id -u)" -eq 0 ]; then
    ns=(unshare --mount --propagation private)
else
    ns=(unshare --user --map-root-user --mount --propagation private)
fi
exec "${ns[@]}" bash -euo pipefail -c '
    hidden=()
    for d in /usr/lib/llvm-* /usr/include/openssl /usr/include/x86_64-linux-gnu/openssl; do
        [ -d "$d" ] && mount -t tmpfs -o ro,size=4k none "$d" && hidden+=("$d")
    done
    for f in /usr/lib/*/libclang*.so* /usr/lib/libclang*.so* /usr/include/sqlite3.h \
        /usr/lib/*/libssl.so /usr/lib/*/libsqlite3.so /usr/lib/*/pkgconfig/openssl.pc \
        /usr/lib/*/pkgconfig/libssl.pc /usr/lib/*/pkgconfig/sqlite3.pc; do
        [ -f "$f" ] && mount --bind /dev/null "$f" && hidden+=("$f")
    done
    echo "fresh-demo: hidden ${#hidden[@]} test-only build parts (libclang, OpenSSL and SQLite headers)" >&2
    CARGO_TARGET_DIR=target/fresh-demo scripts/demo.sh >target/fresh-demo.log 2>&1 || {
        tail -40 target/fresh-demo.log >&2
        echo "fresh-demo: scripts/demo.sh failed without the test-only build needs" >&2
        exit 1
    }
    tail -3 target/fresh-demo.log >&2
    rm -rf target/fresh-demo
'
