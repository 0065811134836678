#!/usr/bin/env bash
# certagent's benchmark: one command, figures side by side, no timed
# assertions. It installs what it needs (like setup.sh), builds release
# binaries, sets up one SoftHSM token (RSA-2048) and one reference bank on
# loopback, and prints:
#   1. PKCS#11 calls per operation (status, logon, renewal, idle agent)
#   2. logon through the local API vs a raw in-process C_Sign vs a process
#      per signature (pkcs11-tool)
#   3. renewal (certagent renew) vs the manual tool pipeline
#      (pkcs11-tool, openssl req and curl through the pkcs11 engine), with
#      RSA-2048 keys and with EC P-256 keys (where SoftHSM's key search does
#      not hide the agent's own cost)
#   4. status latency, start-up to API ready, idle RSS, CPU and wakeups,
#      headless and with the tray on a private D-Bus session
#   5. a hostile-origin flood's refusal rate with a real logon beside it
#      (the helper's 4 connections, and wrk's 32 from one process)
#   6. the same operations as a USB-token user meets them (+20 ms a call,
#      +2 s per key generation)
# with the project's goals next to each figure (OK / over).
#
# Every PKCS#11 user here (the agent, the raw signer, pkcs11-tool, openssl,
# curl) loads the project's forwarding module (tests/fault-module) in front
# of SoftHSM, so all paths compare like for like; it logs calls only where
# calls are counted and adds delays only in section 6.
#
#   scripts/bench.sh               # the full run (about 5 minutes on 2 cores, after the build)
#   BENCH_QUICK=1 scripts/bench.sh # fewer repetitions, 15 s idle windows
#   BENCH_KEEP=1 ...               # keep the work directory (logs, token, bank)
#
# The report goes to stdout (and to bench-report.txt in the work
# directory); progress goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

# ---------------------------------------------------------------- install
bench_packages=(softhsm2 opensc opensc-pkcs11 openssl curl libengine-pkcs11-openssl
    hyperfine jq dbus-daemon dbus-bin procps iproute2 ca-certificates wrk)
missing=()
for p in "${bench_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "need root to install: apt-get install ${missing[*]}" >&2; exit 1; }
        sudo=(sudo)
    fi
    echo "bench: installing ${missing[*]}" >&2
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { echo "cargo is missing: install Rust (https://rustup.rs)" >&2; exit 1; }

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    N_LOGON=50 N_SIGN=200 N_PROC=20 N_RENEW=3 N_STATUS=10 N_READY=5 IDLE_SECS=15 FLOOD_SECS=5
    N_SLOW_LOGON=3 N_SLOW_STATUS=2 N_SLOW_RENEW=1 N_SLOW_PROC=3 N_WRK_LOGON=50
else
    N_LOGON=200 N_SIGN=200 N_PROC=100 N_RENEW=9 N_STATUS=30 N_READY=10 IDLE_SECS=60 FLOOD_SECS=10
    N_SLOW_LOGON=10 N_SLOW_STATUS=5 N_SLOW_RENEW=3 N_SLOW_PROC=10 N_WRK_LOGON=200
fi
log() { echo "bench: $*" >&2; }

# ---------------------------------------------------------------- build
log "building release binaries"
# The product as the workspace's default members build it, then the helper on
# its own (so its dependencies' features do not change the product's build).
cargo build --release --locked -q -p certagent -p certagent-bank -p certagent-fault-pkcs11
cargo build --release --locked -q -p certagent-bench
BIN=$ROOT/target/release
AGENT=$BIN/certagent
BANK=$BIN/certagent-bank
HELPER=$BIN/certagent-bench
FAULT=$BIN/libcertagent_fault_pkcs11.so
SOFTHSM=""
for m in /usr/lib/softhsm/libsofthsm2.so /usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so \
    /usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so; do
    [ -e "$m" ] && { SOFTHSM=$m; break; }
done
[ -n "$SOFTHSM" ] || { echo "libsofthsm2.so not found" >&2; exit 1; }

# ---------------------------------------------------------------- work dir, clean-up
D=$(mktemp -d /tmp/certagent-bench.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-0}" = 1 ]; then
        echo "bench: work directory kept: $D" >&2
    else
        rm -rf "$D"
    fi
}
trap cleanup EXIT
trap "exit 130" INT TERM # so that the EXIT trap stops what was started
unpid() { # forget a pid that was stopped
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; unpid "$1"; }

PIN=123456
LABEL=bank-token
ORIGIN=https://ib.bank.example
SUBJECT="CN=Ana Novak,O=Demo Company"
OSSL_SUBJECT="/O=Demo Company/CN=Ana Novak"

# Every PKCS#11 user goes through the forwarding module in front of SoftHSM.
export SOFTHSM2_CONF=$D/softhsm2.conf
export FAULT_PKCS11_MODULE=$SOFTHSM
export PKCS11_MODULE_PATH=$FAULT # libp11's engine (openssl req, curl)
export XDG_STATE_HOME=$D/state XDG_CONFIG_HOME=$D/xdg
export PINENTRY_TEST_DIR=$D/prompt
unset FAULT_PKCS11_LOG FAULT_PKCS11_DELAY_MS FAULT_PKCS11_KEYGEN_MS FAULT_PKCS11_AT FAULT_PKCS11_MODE
unset CERTAGENT_CONFIG CERTAGENT_PIN DBUS_SESSION_BUS_ADDRESS
export XDG_RUNTIME_DIR=$D/run # no session bus here: headless unless section 4 makes one
mkdir -p "$D/tokens" "$D/state" "$D/xdg" "$D/run" "$D/prompt"
chmod 700 "$D/run"
P11=(pkcs11-tool --module "$FAULT" --token-label "$LABEL")

# ---------------------------------------------------------------- token and bank
log "token, bank and agent configuration in $D"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$D/tokens" >"$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label "$LABEL" --so-pin so-123456 --pin "$PIN" >/dev/null
"$BANK" init --dir "$D/bank" >/dev/null
"$BANK" add-user --dir "$D/bank" --user ana --subject "$SUBJECT" >/dev/null
"${P11[@]}" --login --pin "$PIN" --keypairgen --key-type rsa:2048 --id 01 --label "bank key" >/dev/null 2>&1
"${P11[@]}" --read-object --type pubkey --id 01 -o "$D/pub-01.der" >/dev/null 2>&1
"$BANK" issue --dir "$D/bank" --subject "$SUBJECT" --pubkey "$D/pub-01.der" --days-left 200 --out "$D/cert-01.pem"
openssl x509 -in "$D/cert-01.pem" -outform DER -out "$D/cert-01.der"
"${P11[@]}" --login --pin "$PIN" --write-object "$D/cert-01.der" --type cert --id 01 --label "bank certificate" >/dev/null 2>&1

# A second token with an EC P-256 key, for section 3's second comparison,
# in a token store of its own (SOFTHSM2_CONF), so that every other section
# sees one token as a user does.
LABEL_EC=bank-token-ec
EC_CONF=$D/softhsm2-ec.conf
mkdir -p "$D/tokens-ec"
printf 'directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\n' "$D/tokens-ec" >"$EC_CONF"
SOFTHSM2_CONF=$EC_CONF softhsm2-util --init-token --free --label "$LABEL_EC" --so-pin so-123456 --pin "$PIN" >/dev/null
P11_EC=(pkcs11-tool --module "$FAULT" --token-label "$LABEL_EC")
SOFTHSM2_CONF=$EC_CONF "${P11_EC[@]}" --login --pin "$PIN" --keypairgen --key-type EC:prime256v1 --id 01 --label "bank key" >/dev/null 2>&1
SOFTHSM2_CONF=$EC_CONF "${P11_EC[@]}" --read-object --type pubkey --id 01 -o "$D/pub-ec.der" >/dev/null 2>&1
# Another of the company's users: the bank keeps one current certificate
# per user.
SUBJECT_EC="CN=Ben Ito,O=Demo Company"
OSSL_SUBJECT_EC="/O=Demo Company/CN=Ben Ito"
"$BANK" add-user --dir "$D/bank" --user ben --subject "$SUBJECT_EC" >/dev/null
"$BANK" issue --dir "$D/bank" --subject "$SUBJECT_EC" --pubkey "$D/pub-ec.der" --days-left 200 --out "$D/cert-ec.pem"
openssl x509 -in "$D/cert-ec.pem" -outform DER -out "$D/cert-ec.der"
SOFTHSM2_CONF=$EC_CONF "${P11_EC[@]}" --login --pin "$PIN" --write-object "$D/cert-ec.der" --type cert --id 01 --label "bank certificate" >/dev/null 2>&1
KEY_TYPE=rsa:2048

# The bank lets every certificate be renewed (its own are for 365 days).
"$BANK" serve --dir "$D/bank" --listen 127.0.0.1:0 --renew-window-days 400 >"$D/bank.out" 2>"$D/bank.err" &
BANK_PID=$!
PIDS+=("$BANK_PID")
for _ in $(seq 200); do grep -q '^listening on' "$D/bank.out" 2>/dev/null && break; sleep 0.05; done
EST=$(sed -n 's|^listening on \(https://[^ ]*\)/$|\1|p' "$D/bank.out")
[ -n "$EST" ] || { echo "the bank did not start: $(cat "$D/bank.err")" >&2; exit 1; }
BANK_ADDR=${EST#https://}
BANK_ADDR=${BANK_ADDR%%/*}

# The tests' scripted pinentry (consent "yes", the PIN from a file).
sed -n '/^const PINENTRY: &str = r#"/,/^"#;/p' tests/common/mod.rs | sed '1s/.*r#"//; $d' >"$D/pinentry-test"
chmod 755 "$D/pinentry-test"
printf '%s' "$PIN" >"$D/prompt/pin"

PORT=$("$HELPER" free-port)
API=127.0.0.1:$PORT
cat >"$D/agent.toml" <<EOF
[token]
module = "$FAULT"
label = "$LABEL"
[bank]
est_url = "$EST"
server_roots = "$D/bank/tls-roots.pem"
origins = ["$ORIGIN"]
[policy]
renew_window_days = 400
[agent]
listen = "$API"
pinentry = "$D/pinentry-test"
EOF
CA=(--config "$D/agent.toml")
# The same agent for the EC token: new keys are EC P-256 too ([policy] key).
sed -e "s/^label = .*/label = \"$LABEL_EC\"/" -e 's/^\[policy\]$/[policy]\nkey = "ec-p256"/' \
    "$D/agent.toml" >"$D/agent-ec.toml"

# First contact learns the bank's CA, as any first run does.
"$AGENT" "${CA[@]}" status >/dev/null

# ---------------------------------------------------------------- helpers
now() { echo "${EPOCHREALTIME/./}"; } # microseconds
field() { # field NAME "k=v k=v ..."
    local kv
    for kv in $2; do [ "${kv%%=*}" = "$1" ] && { echo "${kv#*=}"; return; }; done
    echo nan
}
calls() { # calls in a log, less C_Initialize and C_Finalize (as tests/calls.rs counts)
    grep -cvE ' C_(Initialize|Finalize)$' "$1" || true
}
by_function() {
    grep -vE ' C_(Initialize|Finalize)$' "$1" | awk '{print $2}' | sort | uniq -c | sort -rn |
        awk '{printf "%s%s %s", (NR>1?", ":""), $2, $1} END {print ""}'
}
current_id() { "$AGENT" "${CA[@]}" status --json | jq -r '.certificates[0].id'; }
wait_ready() { # wait_ready PID
    for _ in $(seq 400); do
        if curl -s -o /dev/null -w '%{http_code}' -H "Origin: $ORIGIN" "http://$API/v1/status" 2>/dev/null | grep -q 200; then
            return 0
        fi
        kill -0 "$1" 2>/dev/null || { echo "the agent exited" >&2; return 1; }
        sleep 0.05
    done
    echo "the agent did not answer" >&2
    return 1
}
start_agent() { # start_agent [--tray] ; sets AGENT_PID
    local args=(run --no-tray)
    [ "${1:-}" = --tray ] && args=(run)
    "$AGENT" "${CA[@]}" "${args[@]}" >>"$D/agent.out" 2>>"$D/agent.err" &
    AGENT_PID=$!
    PIDS+=("$AGENT_PID")
    wait_ready "$AGENT_PID"
}
time_ms() { # time_ms CMD...: runs it (quiet), prints milliseconds
    local t0 t1
    t0=$(now)
    "$@" >/dev/null 2>>"$D/errors.log" || { echo "bench: failed: $*" >&2; tail -5 "$D/errors.log" >&2; return 1; }
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) / 1000}'
}
stats() { "$HELPER" stats; }
median_of() { field p50 "$(stats)"; }

# The manual pipeline: new key on the token, CSR signed there through the
# pkcs11 engine, EST simplereenroll with the old key as client certificate
# (curl through the same engine), the certificate written, the old objects
# deleted. One process per step, as a person or a script would run it.
manual_renew() { # manual_renew OLD_ID
    local old=$1 new pct_old pct_new
    new=$(openssl rand -hex 20)
    pct_old=$(echo "$old" | sed 's/../%&/g')
    pct_new=$(echo "$new" | sed 's/../%&/g')
    local uri="pkcs11:token=$LABEL"
    "${P11[@]}" --login --pin "$PIN" --keypairgen --key-type "$KEY_TYPE" --id "$new" --label "bank key" &&
        openssl req -new -engine pkcs11 -keyform engine \
            -key "$uri;id=$pct_new;type=private;pin-value=$PIN" \
            -subj "$OSSL_SUBJECT" -sha256 -outform DER -out "$D/m.csr" &&
        base64 -w0 "$D/m.csr" >"$D/m.csr.b64" &&
        curl -sS --fail --cacert "$D/bank/tls-roots.pem" --engine pkcs11 \
            --cert "$uri;id=$pct_old;type=cert" --cert-type ENG \
            --key "$uri;id=$pct_old;type=private;pin-value=$PIN" --key-type ENG \
            -H "Content-Type: application/pkcs10" --data-binary "@$D/m.csr.b64" \
            -o "$D/m.p7.b64" "$EST/simplereenroll" &&
        tr -d '\r\n' <"$D/m.p7.b64" | base64 -d >"$D/m.p7" &&
        openssl pkcs7 -inform DER -in "$D/m.p7" -print_certs -out "$D/m.pem" &&
        openssl x509 -in "$D/m.pem" -outform DER -out "$D/m.der" &&
        "${P11[@]}" --login --pin "$PIN" --write-object "$D/m.der" --type cert --id "$new" --label "bank certificate" &&
        "${P11[@]}" --login --pin "$PIN" --delete-object --type cert --id "$old" &&
        "${P11[@]}" --login --pin "$PIN" --delete-object --type privkey --id "$old" &&
        "${P11[@]}" --login --pin "$PIN" --delete-object --type pubkey --id "$old"
}
agent_renew() { CERTAGENT_PIN=$PIN "$AGENT" "${CA[@]}" renew --yes; }
proc_sign() { # one signature by a process of its own, as a native-messaging host would
    "${P11[@]}" --login --pin "$PIN" --sign --mechanism SHA256-RSA-PKCS-PSS \
        --id "$1" --input-file "$D/challenge.bin" --output-file "$D/sig.bin"
}
head -c 32 /dev/urandom >"$D/challenge.bin"
renew_runs() { # renew_runs N: N agent and N manual renewals, alternating; sets RUNS_AGENT and RUNS_MANUAL (stats)
    local agent=() manual=() old i
    for i in $(seq "$1"); do
        agent+=("$(time_ms agent_renew)")
        old=$(current_id)
        manual+=("$(time_ms manual_renew "$old")")
        [ "$(current_id)" != "$old" ] || { echo "the manual pipeline did not renew ($LABEL; see $D/errors.log)" >&2; cat "$D/errors.log" >&2; exit 1; }
        log "   run $i: agent ${agent[-1]} ms, manual ${manual[-1]} ms"
    done
    RUNS_AGENT=$(printf '%s\n' "${agent[@]}" | stats)
    RUNS_MANUAL=$(printf '%s\n' "${manual[@]}" | stats)
}

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ================================================================ 1. PKCS#11 calls
log "1. PKCS#11 calls per operation"
FAULT_PKCS11_LOG=$D/calls-status.log "$AGENT" "${CA[@]}" status >/dev/null
C_STATUS=$(calls "$D/calls-status.log")
FAULT_PKCS11_LOG=$D/calls-renew.log CERTAGENT_PIN=$PIN "$AGENT" "${CA[@]}" renew --yes >/dev/null 2>>"$D/errors.log"
C_RENEW=$(calls "$D/calls-renew.log")

# ================================================================ 4a. headless agent: idle first
log "4. headless agent: idle ${IDLE_SECS} s (RSS, CPU, wakeups, PKCS#11 calls)"
FAULT_PKCS11_LOG=$D/calls-agent.log start_agent
sleep 3 # the start-up look is over
IDLE_HEADLESS=$("$HELPER" idle --pid "$AGENT_PID" --secs "$IDLE_SECS" --log "$D/calls-agent.log")
C_IDLE=$(field pkcs11_per_min "$IDLE_HEADLESS")
cp "$D/calls-agent.log" "$D/calls-through-idle.log"

# 1 (cont.): one logon's calls, on the same agent.
before=$(wc -l <"$D/calls-agent.log")
"$HELPER" logon --addr "$API" --origin "$ORIGIN" --count 1 --warmup 0 >/dev/null
sleep 0.2
tail -n +"$((before + 1))" "$D/calls-agent.log" >"$D/calls-logon.log"
C_LOGON=$(wc -l <"$D/calls-logon.log")
# And the next one, on what the agent now remembers of the token.
before=$(wc -l <"$D/calls-agent.log")
"$HELPER" logon --addr "$API" --origin "$ORIGIN" --count 1 --warmup 0 >/dev/null
sleep 0.2
tail -n +"$((before + 1))" "$D/calls-agent.log" >"$D/calls-logon2.log"
C_LOGON2=$(wc -l <"$D/calls-logon2.log")
stop "$AGENT_PID"

# ================================================================ 2. logon vs C_Sign vs a process per signature
log "2. logon through the API (x$N_LOGON), raw C_Sign (x$N_SIGN), pkcs11-tool per signature (x$N_PROC)"
ID=$(current_id)
start_agent
# The agent reads the host's TCP table (/proc/net/tcp) for every connection
# (the owner check): other work's sockets lengthen it.
SOCKETS=$(($(ss -Htan | wc -l)))
LOGON=$("$HELPER" logon --addr "$API" --origin "$ORIGIN" --count "$N_LOGON")
SIGN=$("$HELPER" sign --module "$FAULT" --token "$LABEL" --pin "$PIN" --id "$ID" --count "$N_SIGN")
proc_sign "$ID" >/dev/null 2>&1 # warm the page cache
PROC=$(for _ in $(seq "$N_PROC"); do time_ms proc_sign "$ID"; done | stats)

# ================================================================ 5. hostile flood with a real logon beside it
log "5. hostile-origin flood (${FLOOD_SECS} s) with logons beside it"
# First at the goal's rate (1% over, so that start and end still average
# 20k/s), then as fast as the client goes.
FLOOD_PACED=$("$HELPER" flood --addr "$API" --origin "$ORIGIN" --evil https://evil.example --conns 4 --secs "$FLOOD_SECS" --rate 20200)
cpu_ticks() { awk '{print $14, $15}' "/proc/$1/stat"; } # user, system (1/100 s)
read -r U0 S0 < <(cpu_ticks "$AGENT_PID")
FLOOD=$("$HELPER" flood --addr "$API" --origin "$ORIGIN" --evil https://evil.example --conns 4 --secs "$FLOOD_SECS")
read -r U1 S1 < <(cpu_ticks "$AGENT_PID")
TIME_WAIT=$(($(ss -Htan state time-wait | wc -l)))
# wrk: one process, 32 connections (the agent serves 8 of one process and
# holds the rest), a real logon on a new connection each beside it.
log "5. wrk: 32 connections of one process (${FLOOD_SECS} s) with logons beside it"
wrk -t2 -c32 -d"${FLOOD_SECS}s" -H "Origin: https://evil.example" "http://$API/v1/status" >"$D/wrk.out" 2>&1 &
WRK_PID=$!
sleep 1
WRK_LOGON=$("$HELPER" logon --addr "$API" --origin "$ORIGIN" --count "$N_WRK_LOGON" --warmup 0)
wait "$WRK_PID" || true
WRK_SECS=$(sed -n 's/.* requests in \([0-9.]*\)s.*/\1/p' "$D/wrk.out")
WRK_NON2XX=$(sed -n 's/.*Non-2xx or 3xx responses: \([0-9]*\).*/\1/p' "$D/wrk.out")
WRK_REFUSED=$(awk -v n="${WRK_NON2XX:-0}" -v t="${WRK_SECS:-0}" 'BEGIN {printf "%.0f", (t > 0) ? n / t : 0}')
WRK_ERRORS=$(sed -n 's/.*Socket errors: \(.*\)/\1/p' "$D/wrk.out")
RSS_AFTER_WORK=$(awk '/^VmRSS:/ {print $2}' "/proc/$AGENT_PID/status")
stop "$AGENT_PID"

# ================================================================ 3. renewal vs the manual pipeline
log "3. renewal: certagent renew vs the manual pipeline, $N_RENEW each, alternating"
renew_runs "$N_RENEW"
RENEW_AGENT=$RUNS_AGENT RENEW_MANUAL=$RUNS_MANUAL
log "3. the same with EC P-256 keys"
RSA_STATE=("$LABEL" "${CA[@]}" "${P11[@]}")
LABEL=$LABEL_EC CA=(--config "$D/agent-ec.toml") P11=("${P11_EC[@]}") KEY_TYPE=EC:prime256v1 OSSL_SUBJECT_RSA=$OSSL_SUBJECT OSSL_SUBJECT=$OSSL_SUBJECT_EC
export SOFTHSM2_CONF=$EC_CONF
renew_runs "$N_RENEW"
RENEW_AGENT_EC=$RUNS_AGENT RENEW_MANUAL_EC=$RUNS_MANUAL
LABEL=${RSA_STATE[0]} CA=("${RSA_STATE[@]:1:2}") P11=("${RSA_STATE[@]:3}") KEY_TYPE=rsa:2048 OSSL_SUBJECT=$OSSL_SUBJECT_RSA
export SOFTHSM2_CONF=$D/softhsm2.conf

# ================================================================ 4b. status, start-up, tray
log "4. status latency (hyperfine, $N_STATUS runs), start-up to API ready ($N_READY runs)"
hyperfine -N --warmup 3 --runs "$N_STATUS" --export-json "$D/status.json" \
    "$AGENT --config $D/agent.toml status" >/dev/null 2>&1
STATUS=$(jq -r '.results[0].times[] * 1000' "$D/status.json" | stats)
READY=$("$HELPER" ready --addr "$API" --origin "$ORIGIN" --count "$N_READY" -- "$AGENT" "${CA[@]}" run --no-tray)

log "4. agent with the tray on a private D-Bus session: idle ${IDLE_SECS} s"
dbus-daemon --session --nofork --nopidfile --print-address=1 >"$D/bus.addr" 2>/dev/null &
BUS_PID=$!
PIDS+=("$BUS_PID")
for _ in $(seq 100); do [ -s "$D/bus.addr" ] && break; sleep 0.05; done
export DBUS_SESSION_BUS_ADDRESS
DBUS_SESSION_BUS_ADDRESS=$(head -1 "$D/bus.addr")
start_agent --tray
TRAY_ITEM=none
for _ in $(seq 100); do
    TRAY_ITEM=$(dbus-send --session --print-reply --dest=org.freedesktop.DBus /org/freedesktop/DBus \
        org.freedesktop.DBus.ListNames 2>/dev/null | grep -o 'org.kde.StatusNotifierItem-[^"]*' | head -1) && [ -n "$TRAY_ITEM" ] && break
    TRAY_ITEM=none
    sleep 0.1
done
sleep 3
IDLE_TRAY=$("$HELPER" idle --pid "$AGENT_PID" --secs "$IDLE_SECS")
stop "$AGENT_PID"
stop "$BUS_PID"
unset DBUS_SESSION_BUS_ADDRESS

# ================================================================ 6. a USB token's pace
log "6. +20 ms a call, +2 s per key generation: status, logon, renewal"
export FAULT_PKCS11_DELAY_MS=20 FAULT_PKCS11_KEYGEN_MS=2000
S_STATUS=$(for _ in $(seq "$N_SLOW_STATUS"); do time_ms "$AGENT" "${CA[@]}" status; done | stats)
start_agent
S_LOGON=$("$HELPER" logon --addr "$API" --origin "$ORIGIN" --count "$N_SLOW_LOGON" --warmup 1)
stop "$AGENT_PID"
ID=$(current_id)
S_PROC=$(for _ in $(seq "$N_SLOW_PROC"); do time_ms proc_sign "$ID"; done | stats)
S_SIGN=$("$HELPER" sign --module "$FAULT" --token "$LABEL" --pin "$PIN" --id "$ID" --count 5)
renew_runs "$N_SLOW_RENEW"
S_RENEW_AGENT=$RUNS_AGENT S_RENEW_MANUAL=$RUNS_MANUAL
unset FAULT_PKCS11_DELAY_MS FAULT_PKCS11_KEYGEN_MS

# ================================================================ report
verdict() { # verdict VALUE OP LIMIT -> OK | over
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == "<=") ? (v <= l) : (op == ">=") ? (v >= l) : (v < l);
        print (v == "nan" ? "n/a" : ok ? "OK" : "over") }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
r1() { awk -v a="$1" 'BEGIN {printf "%.1f", a}'; }
r3() { awk -v a="$1" 'BEGIN {printf "%.3f", a}'; }
mb() { awk -v a="$1" 'BEGIN {printf "%.1f", a / 1024}'; }
row() { printf '  %-44s %-34s %-22s %s\n' "$@"; }

{
    echo "certagent benchmark ($([ "$QUICK" = 1 ] && echo quick || echo full) run, $(date -u +%Y-%m-%dT%H:%MZ))"
    echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1), kernel $(uname -r), SoftHSM $(softhsm2-util --version), $(openssl version | cut -d' ' -f1-2)"
    echo "load average (1, 5, 15 min) at the start: $LOAD_START, at the end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine shows here)"
    echo "commit: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown); token: SoftHSM RSA-2048 behind the forwarding module; times in ms unless named"
    echo
    echo "1. PKCS#11 calls per operation (forwarding module's log; C_Initialize/C_Finalize not counted for CLI runs)"
    row "operation" "calls" "goal" "verdict"
    row "certagent status" "$C_STATUS" "<= 8" "$(verdict "$C_STATUS" "<=" 8)"
    row "logon through the API, first after idle" "$C_LOGON" "<= 12" "$(verdict "$C_LOGON" "<=" 12)"
    row "logon through the API, the next one" "$C_LOGON2" "<= 12" "$(verdict "$C_LOGON2" "<=" 12)"
    row "certagent renew --yes" "$C_RENEW" "<= 40" "$(verdict "$C_RENEW" "<=" 40)"
    row "idle agent, per minute" "$(r1 "$C_IDLE")" "<= 4" "$(verdict "$C_IDLE" "<=" 4)"
    echo "    status:  $(by_function "$D/calls-status.log")"
    echo "    logon:   $(by_function "$D/calls-logon.log")"
    echo "    next:    $(by_function "$D/calls-logon2.log")"
    echo "    renewal: $(by_function "$D/calls-renew.log")"
    echo
    echo "2. logon: p50 / p99 (n)"
    row "path" "p50 / p99" "vs a process per sig." "goal / verdict"
    row "logon, POST /v1/logon (consent+PIN scripted)" "$(r3 "$(field p50 "$LOGON")") / $(r3 "$(field p99 "$LOGON")") (n=$(field n "$LOGON"))" \
        "$(ratio "$(field p50 "$LOGON")" "$(field p50 "$PROC")")x" \
        "<= 0.5x: $(verdict "$(ratio "$(field p50 "$LOGON")" "$(field p50 "$PROC")")" "<=" 0.5)"
    row "raw in-process C_Sign (logged in once)" "$(r3 "$(field p50 "$SIGN")") / $(r3 "$(field p99 "$SIGN")") (n=$(field n "$SIGN"))" \
        "$(ratio "$(field p50 "$SIGN")" "$(field p50 "$PROC")")x" ""
    row "process per signature (pkcs11-tool)" "$(r3 "$(field p50 "$PROC")") / $(r3 "$(field p99 "$PROC")") (n=$(field n "$PROC"))" "1.00x" ""
    echo "    TCP sockets on the host (all users, all states) when the logons began: $SOCKETS"
    echo "    ratios are of the p50s; at p99 the logon is $(ratio "$(field p99 "$LOGON")" "$(field p99 "$PROC")")x a process per signature"
    echo
    echo "3. renewal: median of $N_RENEW each, alternating (min-max)"
    row "path" "median (min-max)" "vs manual" "goal / verdict"
    row "certagent renew --yes (agent verifies too)" "$(r1 "$(field p50 "$RENEW_AGENT")") ($(r1 "$(field min "$RENEW_AGENT")")-$(r1 "$(field max "$RENEW_AGENT")"))" \
        "$(ratio "$(field p50 "$RENEW_AGENT")" "$(field p50 "$RENEW_MANUAL")")x" \
        "<= 0.6x: $(verdict "$(ratio "$(field p50 "$RENEW_AGENT")" "$(field p50 "$RENEW_MANUAL")")" "<=" 0.6)"
    row "manual: pkcs11-tool + openssl req + curl" "$(r1 "$(field p50 "$RENEW_MANUAL")") ($(r1 "$(field min "$RENEW_MANUAL")")-$(r1 "$(field max "$RENEW_MANUAL")"))" "1.00x" ""
    row "EC P-256: certagent renew --yes" "$(r1 "$(field p50 "$RENEW_AGENT_EC")") ($(r1 "$(field min "$RENEW_AGENT_EC")")-$(r1 "$(field max "$RENEW_AGENT_EC")"))" \
        "$(ratio "$(field p50 "$RENEW_AGENT_EC")" "$(field p50 "$RENEW_MANUAL_EC")")x" \
        "<= 0.5x: $(verdict "$(ratio "$(field p50 "$RENEW_AGENT_EC")" "$(field p50 "$RENEW_MANUAL_EC")")" "<=" 0.5)"
    row "EC P-256: the manual pipeline" "$(r1 "$(field p50 "$RENEW_MANUAL_EC")") ($(r1 "$(field min "$RENEW_MANUAL_EC")")-$(r1 "$(field max "$RENEW_MANUAL_EC")"))" "1.00x" ""
    echo
    echo "4. the agent process"
    row "measure" "figure" "goal" "verdict"
    row "certagent status (hyperfine, p50 / p99)" "$(r3 "$(field p50 "$STATUS")") / $(r3 "$(field p99 "$STATUS")") (n=$(field n "$STATUS"))" "" ""
    row "start of run --no-tray to /v1/status 200" "$(r1 "$(field p50 "$READY")") / $(r1 "$(field p99 "$READY")") (n=$(field n "$READY"))" "" ""
    row "idle RSS, headless" "$(mb "$(field rss_kb "$IDLE_HEADLESS")") MB" "<= 15 MB" "$(verdict "$(mb "$(field rss_kb "$IDLE_HEADLESS")")" "<=" 15)"
    row "idle RSS, tray (private D-Bus)" "$(mb "$(field rss_kb "$IDLE_TRAY")") MB" "<= 30 MB" "$(verdict "$(mb "$(field rss_kb "$IDLE_TRAY")")" "<=" 30)"
    row "idle CPU, headless (s per hour)" "$(r3 "$(field cpu_s_per_hour "$IDLE_HEADLESS")")" "<= 0.1" "$(verdict "$(field cpu_s_per_hour "$IDLE_HEADLESS")" "<=" 0.1)"
    row "idle CPU, tray (s per hour)" "$(r3 "$(field cpu_s_per_hour "$IDLE_TRAY")")" "<= 0.1" "$(verdict "$(field cpu_s_per_hour "$IDLE_TRAY")" "<=" 0.1)"
    row "wakeups per minute, headless" "$(field wakeups_per_min "$IDLE_HEADLESS")" "<= 1" "$(verdict "$(field wakeups_per_min "$IDLE_HEADLESS")" "<=" 1)"
    row "wakeups per minute, tray" "$(field wakeups_per_min "$IDLE_TRAY")" "<= 1" "$(verdict "$(field wakeups_per_min "$IDLE_TRAY")" "<=" 1)"
    row "RSS after the logons and the flood" "$(mb "$RSS_AFTER_WORK") MB" "" ""
    echo "    headless: $IDLE_HEADLESS"
    echo "    tray:     $IDLE_TRAY (tray item on the bus: $TRAY_ITEM)"
    echo
    echo "5. hostile-origin flood: GET /v1/status, Origin https://evil.example, 4 client connections (kept alive unless the agent closes them), ${FLOOD_SECS} s each"
    row "measure" "figure" "goal" "verdict"
    row "paced at 20.2k/s: refused (403) per s" "$(field refused_per_s "$FLOOD_PACED") (other $(field other "$FLOOD_PACED"), errors $(field errors "$FLOOD_PACED"))" ">= 20000" "$(verdict "$(field refused_per_s "$FLOOD_PACED")" ">=" 20000)"
    row "  a real logon beside it, p50 / p99" "$(r3 "$(field logon_p50 "$FLOOD_PACED")") / $(r3 "$(field logon_p99 "$FLOOD_PACED")") (n=$(field logon_n "$FLOOD_PACED"), failed $(field logon_failed "$FLOOD_PACED"))" "p99 < 50 ms" "$(verdict "$(field logon_p99 "$FLOOD_PACED")" "<" 50)"
    row "as fast as it goes: refused (403) per s" "$(field refused_per_s "$FLOOD") (other $(field other "$FLOOD"), errors $(field errors "$FLOOD"))" ">= 20000" "$(verdict "$(field refused_per_s "$FLOOD")" ">=" 20000)"
    row "  a real logon beside it, p50 / p99" "$(r3 "$(field logon_p50 "$FLOOD")") / $(r3 "$(field logon_p99 "$FLOOD")") (n=$(field logon_n "$FLOOD"), failed $(field logon_failed "$FLOOD"))" "p99 < 50 ms" "$(verdict "$(field logon_p99 "$FLOOD")" "<" 50)"
    row "wrk, 32 connections of one process: refused (403) per s" "$WRK_REFUSED (socket errors: ${WRK_ERRORS:-none})" ">= 20000" "$(verdict "$WRK_REFUSED" ">=" 20000)"
    row "  a real logon beside it, p50 / p99" "$(r3 "$(field p50 "$WRK_LOGON")") / $(r3 "$(field p99 "$WRK_LOGON")") (n=$(field n "$WRK_LOGON"))" "p99 < 50 ms" "$(verdict "$(field p99 "$WRK_LOGON")" "<" 50)"
    echo "    the agent's CPU during the unpaced flood: user $(awk -v t=$((U1 - U0)) 'BEGIN {printf "%.2f", t / 100}') s, system $(awk -v t=$((S1 - S0)) 'BEGIN {printf "%.2f", t / 100}') s in ${FLOOD_SECS} s; TCP sockets in TIME_WAIT after it: $TIME_WAIT"
    echo "    the same logon without a flood (section 2): p50 $(r3 "$(field p50 "$LOGON")") / p99 $(r3 "$(field p99 "$LOGON")"); the flood's client threads share the 2 cores with the agent"
    echo

    echo "6. a USB token's pace: +20 ms every call, +2 s per key generation (p50; renewal: median of $N_SLOW_RENEW)"
    row "operation" "p50" "compared with" ""
    row "certagent status" "$(r1 "$(field p50 "$S_STATUS")")" "" ""
    row "logon through the API" "$(r1 "$(field p50 "$S_LOGON")")" "process per sig. $(r1 "$(field p50 "$S_PROC")") ($(ratio "$(field p50 "$S_LOGON")" "$(field p50 "$S_PROC")")x)" "raw C_Sign $(r1 "$(field p50 "$S_SIGN")")"
    row "certagent renew --yes" "$(r1 "$(field p50 "$S_RENEW_AGENT")")" "manual $(r1 "$(field p50 "$S_RENEW_MANUAL")") ($(ratio "$(field p50 "$S_RENEW_AGENT")" "$(field p50 "$S_RENEW_MANUAL")")x)" \
        "<= 0.5x: $(verdict "$(ratio "$(field p50 "$S_RENEW_AGENT")" "$(field p50 "$S_RENEW_MANUAL")")" "<=" 0.5)"
    echo "    calls x 20 ms: status $((C_STATUS * 20)) ms, logon $((C_LOGON * 20)) ms (first) / $((C_LOGON2 * 20)) ms (next), renewal $((C_RENEW * 20)) ms + 2000 ms key generation"
} | tee "$D/bench-report.txt"
