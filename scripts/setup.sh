#!/usr/bin/env bash
# Install what certagent's demo and tests need on Debian/Ubuntu. The demo
# needs only SoftHSM; the tests also use the tools certagent's output is
# checked with (OpenSC's pkcs11-tool and PKCS#11 spy, GnuTLS's p11tool,
# openssl, faketime, strongSwan's EST client), real browsers (chromium and
# chromedriver; firefox-esr, with NSS's certutil for its test profiles) and
# the build needs of the kryoptic soft token the tests build from crates.io
# (tests/kryoptic-module: OpenSSL, libclang for bindgen, SQLite), and the
# smart-card stack of the OpenPGP card tests (pcscd, vsmartcard's virtual
# reader vpcd; the card itself is tests/opcard-emulator). Only
# missing packages are installed. Sourced by demo.sh and
# test.sh: `certagent_setup` for the demo, `certagent_setup tests` for tests.
set -euo pipefail

certagent_demo_packages=(softhsm2 ca-certificates)
certagent_test_packages=(opensc opensc-pkcs11 gnutls-bin openssl faketime
    strongswan-pki libstrongswan-extra-plugins chromium chromium-driver firefox-esr
    libnss3-tools dbus-daemon curl util-linux python3 p11-kit-modules libssl-dev libclang-dev
    libsqlite3-dev fonts-ipafont-gothic pcscd vsmartcard-vpcd imagemagick)

certagent_setup() {
    local wanted=("${certagent_demo_packages[@]}")
    if [ "${1:-}" = tests ]; then
        wanted+=("${certagent_test_packages[@]}")
    fi
    local missing=()
    for p in "${wanted[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local sudo=()
        if [ "$(id -u)" -ne 0 ]; then
            if command -v sudo >/dev/null; then
                sudo=(sudo)
            else
                echo "need root to install: apt-get install ${missing[*]}" >&2
                return 1
            fi
        fi
        echo "installing ${missing[*]}" >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if ! command -v cargo >/dev/null; then
        echo "cargo is missing: install Rust (https://rustup.rs)" >&2
        return 1
    fi
}
