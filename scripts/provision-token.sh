#!/usr/bin/env bash
# Make a SoftHSM token holding bank certificates, using only softhsm2-util,
# pkcs11-tool and openssl (tools certagent did not write), so certagent can be
# tried and tested against a token it did not provision itself.
#
#   scripts/provision-token.sh DIR LABEL PIN DAYS_LEFT...
#
# DIR gets softhsm2.conf (export SOFTHSM2_CONF=DIR/softhsm2.conf), the token
# store and a test CA. For each DAYS_LEFT (may be negative) an RSA-2048 key is
# generated on the token with CKA_ID 01, 02, ... and a one-year certificate
# from the CA that expires in that many days is written beside it. Dates in
# the past come from faketime, since openssl 3.0 cannot back-date.
set -euo pipefail

if [ $# -lt 3 ]; then
    echo "usage: $0 DIR LABEL PIN [DAYS_LEFT...]" >&2
    exit 2
fi
dir=$1 label=$2 pin=$3
shift 3

for tool in softhsm2-util pkcs11-tool openssl faketime; do
    if ! command -v "$tool" >/dev/null; then
        echo "$0: $tool is missing: apt-get install softhsm2 opensc openssl faketime" >&2
        exit 1
    fi
done
module=
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so /usr/local/lib/softhsm/libsofthsm2.so; do
    if [ -e "$m" ]; then module=$m; break; fi
done
if [ -z "$module" ]; then
    echo "$0: libsofthsm2.so not found: apt-get install softhsm2" >&2
    exit 1
fi

mkdir -p "$dir/tokens" "$dir/ca"
dir=$(cd "$dir" && pwd)
cat >"$dir/softhsm2.conf" <<CONF
directories.tokendir = $dir/tokens
objectstore.backend = file
log.level = ERROR
CONF
export SOFTHSM2_CONF=$dir/softhsm2.conf

softhsm2-util --init-token --free --label "$label" --so-pin "so-$pin" --pin "$pin" >/dev/null

ca=$dir/ca
if [ ! -e "$ca/ca.pem" ]; then
    openssl req -x509 -newkey rsa:2048 -nodes -keyout "$ca/ca.key" -out "$ca/ca.pem" \
        -subj "/C=SI/O=Demo Bank/CN=Demo Bank Client CA" -days 3650 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        2>/dev/null
fi
cat >"$ca/client.ext" <<EXT
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EXT

p11() { pkcs11-tool --module "$module" --token-label "$label" "$@"; }

n=0
for days in "$@"; do
    n=$((n + 1))
    id=$(printf '%02x' "$n")
    p11 --login --pin "$pin" --keypairgen --key-type rsa:2048 --id "$id" \
        --label "bank key $n" >/dev/null
    p11 --read-object --type pubkey --id "$id" -o "$ca/key$n.der" >/dev/null
    openssl pkey -pubin -inform DER -in "$ca/key$n.der" -out "$ca/key$n.pem"
    # A one-year certificate whose notAfter is DAYS_LEFT days from now.
    back=$((365 - days))
    faketime -f "-${back}d" openssl x509 -new -subj "/C=SI/O=Demo Company/CN=User $n" \
        -force_pubkey "$ca/key$n.pem" -CA "$ca/ca.pem" -CAkey "$ca/ca.key" \
        -days 365 -extfile "$ca/client.ext" -outform DER -out "$ca/cert$n.der"
    p11 --login --pin "$pin" --write-object "$ca/cert$n.der" --type cert --id "$id" \
        --label "bank certificate $n" >/dev/null
    echo "id $id: certificate expiring in $days days"
done
