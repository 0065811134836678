#!/usr/bin/env bash
# certagent for Windows, cross-built on Debian and run under Wine.
#
#   scripts/windows.sh build   install the cross toolchain and Wine, build into target/windows/:
#                              certagent.exe, certagent-bank.exe, the soft token DLL
#                              (softhsm2-x64.dll), the fault module the tests put in
#                              front of it, a test client of the local API, and Wine's
#                              stand-in bcryptprimitives.dll
#   scripts/windows.sh demo    certagent.exe demo under Wine, in a fresh Wine prefix
#                              (CERTAGENT_LANG=ja for Japanese)
#   scripts/windows.sh test    the Windows tests (tests/windows.rs) under Wine
#
# Wine 8.0 lacks bcryptprimitives.dll, whose ProcessPrng every Rust program
# of today imports (Windows 10 and later have it): a stand-in of a few lines
# (scripts/windows/bcryptprimitives.c, calling RtlGenRandom) sits beside the
# programs in target/windows/ for Wine only; no package ever ships it.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"
out="$root/target/windows"
triple=x86_64-pc-windows-gnu
wine_run="$root/scripts/windows/wine-run.sh"

sudo_() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        echo "need root for: $*" >&2
        return 1
    fi
}

setup() {
    local want=(gcc-mingw-w64-x86-64 g++-mingw-w64-x86-64 wine wine64 msitools wixl cmake make perl patch
        softhsm2 opensc openssl locales xvfb xdotool imagemagick fonts-ipafont-gothic)
    local missing=()
    for p in "${want[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    # SoftHSM2's source comes from Debian (apt-get source): a deb-src line.
    if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        echo "adding a deb-src line for Debian's sources (SoftHSM2 for Windows is built from it)" >&2
        sudo_ tee /etc/apt/sources.list.d/certagent-deb-src.sources >/dev/null <<'EOS'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOS
        sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    fi
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    # Wine takes the Windows display language from the Unix locale, which
    # must exist: Japanese and English.
    if ! locale -a 2>/dev/null | grep -qx ja_JP.utf8 || ! locale -a 2>/dev/null | grep -qx en_US.utf8; then
        echo "generating the ja_JP.UTF-8 and en_US.UTF-8 locales (Wine's Japanese and English)" >&2
        sudo_ sed -i -E 's/^# *(ja_JP.UTF-8 UTF-8|en_US.UTF-8 UTF-8)/\1/' /etc/locale.gen
        sudo_ locale-gen >/dev/null
    fi
    if ! rustup target list --installed 2>/dev/null | grep -qx "$triple"; then
        rustup target add "$triple"
    fi
}

# The soft token DLL takes ten minutes to build: it is kept, by the hash of
# what it is built from, in the user's cache (as cargo keeps crates), and
# copied from there.
softhsm_dll() {
    local key
    key=$(cat scripts/windows/softhsm2.sh scripts/windows/softhsm2-2.6.1-mingw.patch \
        scripts/windows/mingw-w64-x86_64.cmake scripts/windows/mingw-w64-rules-override.cmake |
        sha256sum | cut -c1-16)
    local cache="${XDG_CACHE_HOME:-$HOME/.cache}/certagent/windows/softhsm2-$key"
    if [ ! -f "$cache/softhsm2-x64.dll" ]; then
        mkdir -p "$cache"
        scripts/windows/softhsm2.sh "$cache/softhsm2-x64.dll.part" "$out/softhsm2-build"
        mv "$cache/softhsm2-x64.dll.part" "$cache/softhsm2-x64.dll"
    fi
    cp "$cache/softhsm2-x64.dll" "$out/softhsm2-x64.dll"
}

build() {
    setup
    mkdir -p "$out"
    x86_64-w64-mingw32-gcc -O2 -shared -s -o "$out/bcryptprimitives.dll" \
        scripts/windows/bcryptprimitives.c -ladvapi32
    softhsm_dll
    cargo build --locked --target "$triple" -p certagent -p certagent-bank -p certagent-fault-pkcs11 \
        -p certagent-win-client
    local built="${CARGO_TARGET_DIR:-$root/target}/$triple/debug"
    cp "$built/certagent.exe" "$built/certagent-bank.exe" "$built/certagent_fault_pkcs11.dll" \
        "$built/certagent-win-client.exe" "$out/"
    scripts/windows/msi.sh "$out"
    echo "built into $out:" >&2
    ls -l "$out"/*.exe "$out"/*.dll >&2
}

# A fresh Wine prefix of its own: Windows as a new user has it.
fresh_prefix() {
    local p="$out/prefix-$1"
    rm -rf "$p"
    mkdir -p "$p"
    echo "$p"
}

demo() {
    [ -f "$out/certagent.exe" ] || build
    local prefix
    prefix=$(fresh_prefix demo)
    echo "certagent.exe demo under Wine (prefix $prefix)" >&2
    WINEPREFIX="$prefix" "$wine_run" "$out/certagent.exe" demo "$@"
}

test_() {
    build
    # The lints hold for Windows too.
    cargo clippy --locked --target "$triple" -p certagent -p certagent-bank -p certagent-fault-pkcs11 -p certagent-win-client \
        --lib --bins -- -D warnings
    if ! cargo nextest --version >/dev/null 2>&1; then
        cargo install --locked cargo-nextest
    fi
    CERTAGENT_WINDOWS_DIR="$out" cargo nextest run --locked --profile windows --test windows --test windows_msi
}

case "${1:-}" in
build) build ;;
demo) shift; demo "$@" ;;
test) test_ ;;
*)
    echo "usage: scripts/windows.sh build | demo | test" >&2
    exit 2
    ;;
esac
