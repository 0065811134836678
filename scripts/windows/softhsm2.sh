#!/usr/bin/env bash
# Cross-build SoftHSM2 2.6.1 (Debian 12's source, plain upstream) into one
# self-contained Windows x64 PKCS#11 DLL: OpenSSL 3 (the openssl-src crate's
# source tree, from crates.io) linked in statically, so it imports only
# Windows' own DLLs. This is the soft token of the Windows demo and tests:
# SoftHSM has Windows code paths of its own (file locking, mutexes,
# SOFTHSM2_CONF) and keeps its token files in the same format on Linux and
# Windows (every CK_ULONG stored as 8 bytes, big-endian), so a token made
# under Wine is judged by Linux's pkcs11-tool, and the other way round.
# kryoptic has no Windows support yet.
#
#   scripts/windows/softhsm2.sh OUT_DLL WORK_DIR
#
# About 10 minutes on two cores (OpenSSL 7, SoftHSM 2); 6.8 MB stripped.
set -euo pipefail
mkdir -p "$2/src" "$2/build" "$(dirname "$1")"
out="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
work="$(cd "$2" && pwd)"
here="$(cd "$(dirname "$0")" && pwd)"
openssl_src_crate="=300.6.1" # OpenSSL 3.6.3
export WINEPREFIX="$work/prefix"
t0=$(date +%s)
step() { echo "softhsm2 for Windows [$(($(date +%s) - t0)) s]: $*" >&2; }

cd "$work/src"
if [ ! -f softhsm2_2.6.1.orig.tar.gz ]; then
    step "apt-get source softhsm2 (Debian 12: 2.6.1-2.1)"
    # Only the upstream tarball is used (checked against the .dsc below);
    # a mirror may refuse the Debian patch tarball, which is not needed.
    apt-get source --download-only softhsm2=2.6.1-2.1 >/dev/null 2>&1 || true
fi
[ -f softhsm2_2.6.1-2.1.dsc ] && [ -f softhsm2_2.6.1.orig.tar.gz ] || {
    echo "cannot fetch SoftHSM2's source: apt-get source needs a deb-src line (scripts/windows.sh adds one)" >&2
    exit 1
}
want=$(awk '/^Checksums-Sha256:/{f=1;next} f&&/orig.tar.gz/{print $1;exit}' softhsm2_2.6.1-2.1.dsc)
echo "$want  softhsm2_2.6.1.orig.tar.gz" | sha256sum -c - >/dev/null

if [ ! -d openssl-src/vendor/openssl-src/openssl ]; then
    step "OpenSSL's source from crates.io (openssl-src $openssl_src_crate)"
    rm -rf openssl-src && mkdir -p openssl-src/src && cd openssl-src
    printf '[package]\nname = "openssl-src-fetch"\nversion = "0.0.0"\nedition = "2021"\n[lib]\npath = "src/lib.rs"\n[dependencies]\nopenssl-src = "%s"\n[workspace]\n' \
        "$openssl_src_crate" >Cargo.toml
    : >src/lib.rs
    cargo vendor --quiet vendor >/dev/null
    cd "$work/src"
fi

prefix="$work/build/openssl-mingw64"
if [ ! -f "$prefix/lib/libcrypto.a" ]; then
    step "OpenSSL, static, for mingw64"
    rm -rf "$work/build/openssl" && cp -a openssl-src/vendor/openssl-src/openssl "$work/build/openssl"
    cd "$work/build/openssl"
    ./Configure mingw64 no-shared no-module no-tests no-docs no-apps \
        --cross-compile-prefix=x86_64-w64-mingw32- --prefix="$prefix" --libdir=lib >../openssl-configure.log
    make -j2 build_libs >../openssl-build.log 2>&1 || { tail -20 ../openssl-build.log >&2; exit 1; }
    make install_dev >../openssl-install.log 2>&1
fi

step "SoftHSM2, patched for a mingw-w64 CMake build"
rm -rf "$work/build/softhsm2-2.6.1" "$work/build/softhsm2"
tar xzf "$work/src/softhsm2_2.6.1.orig.tar.gz" -C "$work/build"
patch -s -d "$work/build/softhsm2-2.6.1" -p1 <"$here/softhsm2-2.6.1-mingw.patch"
mkdir -p "$work/build/softhsm2" && cd "$work/build/softhsm2"
# CMake runs SoftHSM's feature probes under Wine (the toolchain file's
# emulator). HAVE_PTHREAD_H=0: SoftHSM's Win32 mutexes, not winpthreads;
# no GOST (OpenSSL 3 has none), no mlock (POSIX only), no tests.
cmake ../softhsm2-2.6.1 \
    -DCMAKE_TOOLCHAIN_FILE="$here/mingw-w64-x86_64.cmake" \
    -DOPENSSL_ROOT_DIR="$prefix" -DOPENSSL_USE_STATIC_LIBS=ON \
    -DCMAKE_BUILD_TYPE=Release -DENABLE_GOST=OFF -DENABLE_EDDSA=ON -DENABLE_P11_KIT=OFF \
    -DBUILD_TESTS=OFF -DDISABLE_NON_PAGED_MEMORY=ON -DHAVE_PTHREAD_H=0 -DENABLE_STATIC=OFF \
    >../softhsm2-cmake.log 2>&1 || { tail -30 ../softhsm2-cmake.log >&2; exit 1; }
grep -q 'OpenSSL: Found P-256' ../softhsm2-cmake.log || { echo "SoftHSM's configure found no P-256 in OpenSSL" >&2; exit 1; }
make -j2 softhsm2 >../softhsm2-make.log 2>&1 || { grep -m20 -B2 -A5 error ../softhsm2-make.log >&2; exit 1; }
x86_64-w64-mingw32-strip -o "$out" src/lib/libsofthsm2.dll
step "done: $(stat -c %s "$out") bytes, importing $(x86_64-w64-mingw32-objdump -p "$out" | awk '/DLL Name/{printf "%s ", $3}')"
