#!/usr/bin/env bash
# A look at certagent on a fresh SoftHSM token, in a temporary directory that
# is removed afterwards. The token is provisioned only with pkcs11-tool and
# openssl, as a bank's old procedure would leave it: four certificates that
# expire in 200, 20, -5 and -100 days. certagent then lists the token, shows
# the certificates' lifecycle states, and checks that every key signs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
certagent_setup

cargo build --quiet --locked
bin=$PWD/target/debug/certagent
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== provisioning a SoftHSM token with pkcs11-tool and openssl"
scripts/provision-token.sh "$work" demo-token 246810 200 20 -5 -100
export SOFTHSM2_CONF=$work/softhsm2.conf
cat >"$work/config.toml" <<CONF
[token]
module = "softhsm2"
label = "demo-token"
CONF
run() { echo; echo "\$ certagent $*"; "$bin" --config "$work/config.toml" "$@"; }

run tokens
run status
run show --id 02
# The PIN comes from CERTAGENT_PIN here because the demo is unattended.
CERTAGENT_PIN=246810 run doctor
echo
echo "== and with a wrong PIN (tried once, never again):"
CERTAGENT_PIN=000000 run doctor || true
