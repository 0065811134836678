#!/usr/bin/env bash
# Install what certagent's demo and tests need on Debian/Ubuntu: the SoftHSM
# token, OpenSC's pkcs11-tool and PKCS#11 spy, GnuTLS's p11tool, openssl and
# faketime. Only missing packages are installed. Sourced by demo.sh and test.sh.
set -euo pipefail

certagent_packages=(softhsm2 opensc opensc-pkcs11 gnutls-bin openssl faketime ca-certificates strongswan-pki libstrongswan-extra-plugins)

certagent_setup() {
    local missing=()
    for p in "${certagent_packages[@]}"; do
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
