#!/usr/bin/env bash
# The packaging test, as CI runs it (last step of scripts/test.sh): builds the
# Debian package with cargo-deb, installs it on this machine with dpkg, checks
# that the autostart entry and the systemd user unit find what they start,
# that the unit and the entry are valid and do not both start the agent, runs
# the packaged binaries, runs lintian, checks the Windows and macOS
# definitions, and removes the package again, leaving the machine as it was.
#
# Needs root (or sudo) for apt-get and dpkg. Runs without a terminal.
#
#   CERTAGENT_DEB_PROFILE=dev      (default) package the debug build that
#                                  `cargo nextest run` already made: seconds
#                                  instead of a release build. cargo-deb warns
#                                  that it does not support the dev profile.
#   CERTAGENT_DEB_PROFILE=release  package what `cargo deb` ships.
set -euo pipefail
cd "$(dirname "$0")/.."

started=$SECONDS
passed=0
failed=0
profile=${CERTAGENT_DEB_PROFILE:-dev}
# Pinned so that CI builds the same tool every time; any installed cargo-deb
# is used as it is.
cargo_deb_version=3.8.0

trap 'echo "package test: FAILED: line $LINENO: $BASH_COMMAND exited $?" >&2' ERR

say() { printf 'package test: %s\n' "$*"; }
die() {
    printf 'package test: FAILED: %s\n' "$*" >&2
    exit 1
}
# check NAME COMMAND...: one counted check. The command's output is shown
# only when it fails.
check() {
    local name=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        passed=$((passed + 1))
        printf 'ok   %s\n' "$name"
    else
        failed=$((failed + 1))
        printf 'FAIL %s\n' "$name" >&2
        [ -z "$out" ] || printf '%s\n' "$out" | sed 's/^/     /' >&2
    fi
}

sudo=()
if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "need root, or sudo, for apt-get and dpkg"
    sudo=(sudo -n)
fi
as_root() { "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive "$@"; }

# --- tools -----------------------------------------------------------------
command -v cargo >/dev/null || die "cargo is missing: install Rust (https://rustup.rs)"
if ! cargo deb --version >/dev/null 2>&1; then
    say "installing cargo-deb $cargo_deb_version (a few minutes)"
    cargo install --locked cargo-deb --version "$cargo_deb_version" ||
        die "cargo install cargo-deb failed"
fi
# tool -> Debian package
declare -A tools=(
    [lintian]=lintian
    [desktop-file-validate]=desktop-file-utils
    [systemd-analyze]=systemd
    [xmllint]=libxml2-utils
    [man]=man-db
)
missing=()
for t in "${!tools[@]}"; do
    command -v "$t" >/dev/null || missing+=("${tools[$t]}")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    as_root apt-get update -qq || die "apt-get update failed"
    as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        die "apt-get install ${missing[*]} failed"
fi
generator=/usr/lib/systemd/user-generators/systemd-xdg-autostart-generator
[ -x "$generator" ] || die "$generator is missing (package systemd)"

# --- build -----------------------------------------------------------------
if dpkg-query -W certagent >/dev/null 2>&1; then
    die "dpkg already knows a certagent package here ($(dpkg-query -W -f='${Version} ${Status}' certagent)); this test installs and purges its own, so purge that one first: dpkg --purge certagent"
fi

work=$(mktemp -d)
installed_by_us=0
cleanup() {
    if [ "$installed_by_us" = 1 ] && dpkg-query -W certagent >/dev/null 2>&1; then
        echo "package test: removing the package after a failure" >&2
        as_root dpkg --purge certagent >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# Both programs, whatever the installed cargo-deb builds by itself: the
# certagent-bank asset is the binary of another workspace package (bank/).
say "building certagent and certagent-bank (profile $profile)"
cargo build --locked --profile "$profile" --workspace --bins >"$work/cargo-build.log" 2>&1 || {
    cat "$work/cargo-build.log" >&2
    die "cargo build failed"
}
say "building the .deb (profile $profile)"
deb_args=(--locked --output "$work/")
if [ "$profile" != release ]; then
    # Only for this test: cheaper compression.
    deb_args+=(--profile "$profile" --fast)
fi
cargo deb "${deb_args[@]}" >"$work/cargo-deb.log" 2>&1 || {
    cat "$work/cargo-deb.log" >&2
    die "cargo deb failed"
}
grep -v 'dev profile is not supported\|To enable debug symbols set' "$work/cargo-deb.log" | tail -n 3 || true
debs=("$work"/certagent_*.deb)
[ -f "${debs[0]}" ] || die "cargo deb made no certagent_*.deb in $work"
deb=${debs[0]}
version=$(dpkg-deb -f "$deb" Version)
upstream=${version%-*}
say "built $(basename "$deb") ($(du -h "$deb" | cut -f1))"

# --- the package as built ---------------------------------------------------
dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' >"$work/contents"

expected_files=(
    /usr/bin/certagent
    /usr/bin/certagent-bank
    /etc/xdg/autostart/certagent.desktop
    /usr/lib/systemd/user/certagent.service
    /etc/chromium/native-messaging-hosts/certagent.json
    /usr/lib/mozilla/native-messaging-hosts/certagent.json
    /usr/share/icons/hicolor/scalable/apps/certagent.svg
    /usr/share/man/man1/certagent.1.gz
    /usr/share/man/man1/certagent-bank.1.gz
    /usr/share/doc/certagent/copyright
    /usr/share/doc/certagent/changelog.Debian.gz
    /usr/share/doc/certagent/examples/config.toml
    /usr/share/lintian/overrides/certagent
)
for f in drivers/*.toml; do
    expected_files+=("/usr/share/certagent/drivers/$(basename "$f")")
done
# The tray's state icons, every size (src/agent/icons.rs draws them).
for f in packaging/icons/hicolor/*/status/*.png; do
    expected_files+=("/usr/share/icons/${f#packaging/icons/}")
done

has_expected_files() {
    local f rc=0
    for f in "${expected_files[@]}"; do
        grep -qxF "$f" "$work/contents" || {
            echo "missing from the .deb: $f"
            rc=1
        }
    done
    return $rc
}
check "the .deb holds the ${#expected_files[@]} expected files" has_expected_files

control_fields() {
    local rc=0 want field
    field() { dpkg-deb -f "$deb" "$1"; }
    for want in "Package=certagent" "Section=utils" "Priority=optional" \
        "Recommends=pcscd, opensc, p11-kit-modules, pinentry-gnome3 | pinentry" \
        "Suggests=softhsm2" "Maintainer=certagent developers"; do
        [ "$(field "${want%%=*}")" = "${want#*=}" ] || {
            echo "${want%%=*}: '$(field "${want%%=*}")', want '${want#*=}'"
            rc=1
        }
    done
    # $auto: dpkg-shlibdeps found the C library the binaries link.
    field Depends | grep -q '^libc6 (>= ' || {
        echo "Depends: '$(field Depends)', want libc6 from \$auto"
        rc=1
    }
    local synopsis
    synopsis=$(field Description | head -n 1)
    [ ${#synopsis} -le 80 ] || {
        echo "Description synopsis is ${#synopsis} characters, at most 80: $synopsis"
        rc=1
    }
    [ "$(field Description | wc -l)" -gt 3 ] || {
        echo "no extended description"
        rc=1
    }
    return $rc
}
check "control: section, priority, \$auto Depends, Recommends, Suggests, description" control_fields

versions_agree() {
    local rc=0 cl th
    cl=$(sed -n '1s/^certagent (\([^)]*\)).*/\1/p' packaging/deb/changelog)
    [ "$cl" = "$version" ] || {
        echo "packaging/deb/changelog is at '$cl', the package at '$version': add a changelog entry"
        rc=1
    }
    for th in packaging/man/certagent.1 packaging/man/certagent-bank.1; do
        grep -q "^\.TH .*\"certagent $upstream\"" "$th" || {
            echo "$th: .TH does not say \"certagent $upstream\""
            rc=1
        }
    done
    grep -q "<?define Version = \"$upstream\" ?>" packaging/windows/certagent.wxs || {
        echo "packaging/windows/certagent.wxs: default Version is not $upstream"
        rc=1
    }
    [ "$(grep -A1 -E '<key>CFBundle(ShortVersionString|Version)</key>' packaging/macos/Info.plist |
        grep -c "<string>$upstream</string>")" = 2 ] || {
        echo "packaging/macos/Info.plist: CFBundleShortVersionString and CFBundleVersion are not both $upstream"
        rc=1
    }
    return $rc
}
check "changelog, man pages, WiX and Info.plist are at version $version" versions_agree

# --- install ------------------------------------------------------------------
snapshot() {
    # What the package and its maintainer scripts may touch outside its own
    # files: the user unit's enablement and deb-systemd-helper's state.
    {
        find /etc/systemd/user /var/lib/systemd/deb-systemd-user-helper-enabled \
            /etc/xdg/autostart /usr/lib/systemd/user /usr/share/certagent \
            /usr/share/doc/certagent 2>/dev/null || true
    } | sort
}
snapshot >"$work/before"

say "installing it with dpkg"
installed_by_us=1
if ! as_root dpkg -i "$deb" >"$work/dpkg.log" 2>&1; then
    say "dpkg -i wants dependencies; apt-get -f install"
    as_root apt-get install -f -y -qq >>"$work/dpkg.log" 2>&1 || {
        cat "$work/dpkg.log" >&2
        die "the package does not install"
    }
fi
dpkg-query -W -f='${Status}' certagent | grep -q '^install ok installed$' || {
    cat "$work/dpkg.log" >&2
    die "certagent is not 'install ok installed' after dpkg -i"
}

all_files_installed() {
    local f rc=0
    while read -r f; do
        case $f in */) continue ;; esac
        [ -e "$f" ] || {
            echo "not on disk: $f"
            rc=1
        }
    done <"$work/contents"
    return $rc
}
check "every file of the package is on disk" all_files_installed

same_as_source() {
    local rc=0 f
    for f in drivers/*.toml; do
        cmp -s "$f" "/usr/share/certagent/drivers/$(basename "$f")" || {
            echo "differs: $f"
            rc=1
        }
    done
    cmp -s packaging/config.example.toml /usr/share/doc/certagent/examples/config.toml || {
        echo "differs: examples/config.toml"
        rc=1
    }
    return $rc
}
check "driver profiles and the example config are the repository's" same_as_source

desktop=/etc/xdg/autostart/certagent.desktop
unit=/usr/lib/systemd/user/certagent.service
key() { sed -n "s/^$1=//p" "$2" | head -n 1; }

# The .desktop's Exec resolves, through PATH as the session would, to the
# packaged binary.
exec_resolves() {
    local exec bin path owner
    exec=$(key Exec "$desktop")
    bin=${exec%% *}
    [ "$exec" = "$bin run" ] || {
        echo "Exec=$exec, want '$bin run'"
        return 1
    }
    path=$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$bin") || {
        echo "Exec=$exec: $bin is not on PATH"
        return 1
    }
    [ -x "$path" ] || {
        echo "$path is not executable"
        return 1
    }
    owner=$(dpkg -S "$path" 2>/dev/null | cut -d: -f1)
    [ "$owner" = certagent ] || {
        echo "$path belongs to '${owner:-no package}', not certagent"
        return 1
    }
    [ "$(key TryExec "$desktop")" = "$bin" ] || {
        echo "TryExec is not $bin"
        return 1
    }
}
check "autostart Exec=$(key Exec "$desktop") resolves to the packaged /usr/bin/certagent" exec_resolves

desktop_keys() {
    local rc=0 k
    for k in "Type=Application" "X-GNOME-Autostart-enabled=true" "X-systemd-skip=true" \
        "X-GNOME-HiddenUnderSystemd=true" "Icon=certagent" "Terminal=false"; do
        grep -qxF "$k" "$desktop" || {
            echo "missing: $k"
            rc=1
        }
    done
    if grep -q '^X-GNOME-Autostart-Phase=' "$desktop"; then
        echo "X-GNOME-Autostart-Phase would make gnome-session start a second agent"
        rc=1
    fi
    for k in Name Comment Categories; do
        [ -n "$(key "$k" "$desktop")" ] || {
            echo "no $k"
            rc=1
        }
    done
    [ -f "/usr/share/icons/hicolor/scalable/apps/$(key Icon "$desktop").svg" ] || {
        echo "Icon=$(key Icon "$desktop") is not in hicolor/scalable/apps"
        rc=1
    }
    return $rc
}
check "autostart entry: enabled, hidden where the unit runs, icon installed" desktop_keys

desktop_valid() {
    local out
    out=$(desktop-file-validate "$desktop" 2>&1) || {
        echo "$out"
        return 1
    }
    # Hints are fine; warnings and errors are not.
    if printf '%s\n' "$out" | grep -E 'error:|warning:'; then return 1; fi
}
check "desktop-file-validate $desktop" desktop_valid

icon_valid() {
    xmllint --noout /usr/share/icons/hicolor/scalable/apps/certagent.svg &&
        grep -q '<svg[^>]*viewBox=' /usr/share/icons/hicolor/scalable/apps/certagent.svg
}
check "the icon is well-formed SVG with a viewBox" icon_valid

unit_exec() {
    local exec bin
    exec=$(key ExecStart "$unit")
    bin=${exec%% *}
    [ "$exec" = "/usr/bin/certagent run" ] || {
        echo "ExecStart=$exec, want '/usr/bin/certagent run'"
        return 1
    }
    [ -x "$bin" ] || {
        echo "ExecStart: $bin is not an installed executable"
        return 1
    }
    # The same program as the autostart entry starts.
    [ "$bin" -ef "$(PATH=/usr/local/bin:/usr/bin:/bin command -v "$(key Exec "$desktop" | cut -d' ' -f1)")" ] || {
        echo "the unit and the autostart entry start different programs"
        return 1
    }
}
check "unit ExecStart=$(key ExecStart "$unit") exists" unit_exec

unit_keys() {
    local rc=0 k
    for k in "Restart=on-failure" "PartOf=graphical-session.target" \
        "After=graphical-session.target" "WantedBy=graphical-session.target" \
        "NoNewPrivileges=yes"; do
        grep -qxF "$k" "$unit" || {
            echo "missing: $k"
            rc=1
        }
    done
    return $rc
}
check "unit: Restart=on-failure, bound to graphical-session.target, sandboxed" unit_keys

unit_verifies() {
    local rt out rc=0
    rt=$(mktemp -d)
    chmod 700 "$rt"
    # systemd-analyze exits 0 even for unknown keys and bad values: any
    # message is a failure.
    out=$(XDG_RUNTIME_DIR=$rt systemd-analyze verify --user "$unit" 2>&1) || rc=$?
    rm -rf "$rt"
    [ -z "$out" ] || {
        echo "$out"
        return 1
    }
    return $rc
}
check "systemd-analyze verify --user $unit" unit_verifies

unit_enabled() {
    local link=/etc/systemd/user/graphical-session.target.wants/certagent.service
    [ "$(readlink "$link")" = "$unit" ] || {
        echo "$link -> '$(readlink "$link" || true)', want $unit (postinst enables the unit)"
        return 1
    }
}
check "the user unit is enabled for graphical sessions" unit_enabled

# systemd's own generator, as a systemd-managed session runs it: it must make no
# unit of the autostart entry (the user unit starts the agent there), and it
# would make one without X-systemd-skip (so the check means something).
no_double_start() {
    local out=$work/gen alt=$work/xdg-control
    mkdir -p "$out" "$alt/autostart" "$work/empty-home"
    XDG_CONFIG_HOME=$work/empty-home XDG_CONFIG_DIRS=/etc/xdg "$generator" "$out" "$out" "$out" || return 1
    if ls "$out" | grep -q 'certagent'; then
        echo "the generator made a unit of $desktop:"
        ls "$out"
        return 1
    fi
    grep -v '^X-systemd-skip=' "$desktop" >"$alt/autostart/certagent.desktop"
    rm -rf "$out" && mkdir -p "$out"
    XDG_CONFIG_HOME=$work/empty-home XDG_CONFIG_DIRS=$alt "$generator" "$out" "$out" "$out" || return 1
    ls "$out" | grep -q '^app-certagent@autostart.service$' || {
        echo "control failed: without X-systemd-skip the generator made no app-certagent@autostart.service"
        ls "$out"
        return 1
    }
}
check "xdg-autostart-generator skips the entry: only the user unit starts the agent" no_double_start

runs_version() {
    local out rc=0
    out=$(/usr/bin/certagent --version) || return 1
    [ "$out" = "certagent $upstream" ] || {
        echo "/usr/bin/certagent --version: '$out', want 'certagent $upstream'"
        rc=1
    }
    out=$(/usr/bin/certagent-bank --version) || return 1
    [ "$out" = "certagent-bank $upstream" ] || {
        echo "/usr/bin/certagent-bank --version: '$out', want 'certagent-bank $upstream'"
        rc=1
    }
    return $rc
}
check "/usr/bin/certagent --version says $upstream (and certagent-bank)" runs_version

# What the unit and the entry run: /usr/bin/certagent run, with a minimal
# configuration of its own (and /bin/true as pinentry, never asked here),
# serves the local API and stops cleanly on SIGTERM, as systemd stops it.
agent_runs() {
    local home=$work/agent-home pid port i rc=0
    mkdir -p "$home/config/certagent" "$home/state"
    : >"$home/config/certagent/roots.pem"
    cat >"$home/config/certagent/config.toml" <<'EOF'
[bank]
est_url = "https://127.0.0.1:8443/.well-known/est"
server_roots = "roots.pem"
origins = ["https://ib.bank.example"]
[agent]
listen = "127.0.0.1:0"
pinentry = "/bin/true"
EOF
    HOME=$home XDG_CONFIG_HOME=$home/config XDG_STATE_HOME=$home/state \
        /usr/bin/certagent run --no-tray >"$home/out" 2>&1 &
    pid=$!
    for i in $(seq 100); do
        grep -q 'local API on http://' "$home/out" && break
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    port=$(sed -n 's|.*local API on http://127\.0\.0\.1:\([0-9]*\).*|\1|p' "$home/out")
    if [ -z "$port" ]; then
        echo "certagent run did not serve the local API:"
        cat "$home/out"
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        return 1
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || {
        echo "nothing accepts connections on 127.0.0.1:$port"
        rc=1
    }
    kill -TERM "$pid"
    wait "$pid" || {
        echo "certagent run exited $? on SIGTERM, want 0:"
        cat "$home/out"
        rc=1
    }
    return $rc
}
check "/usr/bin/certagent run serves the local API and stops cleanly on SIGTERM" agent_runs

# Every command in --help has its own paragraph in the man page, and the page
# renders without warnings.
man_pages_current() {
    local rc=0 prog cmd page out text
    for prog in certagent certagent-bank; do
        page=/usr/share/man/man1/$prog.1.gz
        out=$(LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -l "$page" 2>&1 >/dev/null) || rc=1
        [ -z "$out" ] || {
            echo "$page: $out"
            rc=1
        }
        # man-db strips the formatting when writing to a pipe.
        text=$(LC_ALL=C.UTF-8 MANWIDTH=80 man -l "$page" 2>/dev/null)
        # The commands from the English help (a locale of another language
        # would translate the heading); none found is a failure, never a
        # loop over nothing.
        cmds=$(LC_ALL=C.UTF-8 LANG=C.UTF-8 LANGUAGE= "/usr/bin/$prog" --help |
            awk '/^Commands:/ {f = 1; next} /^$/ {f = 0} f {print $1}')
        if [ "$(printf '%s\n' $cmds | grep -c .)" -lt 3 ]; then
            echo "$prog --help lists no commands under 'Commands:' (got: $cmds)"
            rc=1
        fi
        for cmd in $cmds; do
            printf '%s\n' "$text" | grep -qE "^       $cmd( |$)" || {
                echo "$page has no paragraph for '$prog $cmd'"
                rc=1
            }
        done
    done
    return $rc
}
check "the man pages render and cover every command in --help" man_pages_current

# --- lintian ----------------------------------------------------------------------
say "lintian $(lintian --version | awk '{print $2}') on $(basename "$deb"):"
# All findings are shown, the accepted ones (O:) with the reason from
# packaging/lintian-overrides (N:). Errors and warnings not accepted there
# (E:, W:) fail the check, and so does lintian failing to run (exit 1);
# info and pedantic findings do not.
lintian_rc=0
lintian --display-info --pedantic --show-overrides --tag-display-limit 0 "$deb" \
    >"$work/lintian.txt" 2>&1 || lintian_rc=$?
grep -v 'running with root privileges' "$work/lintian.txt" | sed 's/^/  /' || echo "  (no findings)"
lintian_clean() {
    [ "$lintian_rc" -ne 1 ] || {
        echo "lintian failed to run:"
        cat "$work/lintian.txt"
        return 1
    }
    if grep -E '^[EW]: ' "$work/lintian.txt"; then return 1; fi
}
check "lintian: no errors or warnings beyond packaging/lintian-overrides" lintian_clean

# --- the other platforms' definitions (not built here) ------------------------------
wix_ok() {
    local rc=0 f
    xmllint --noout packaging/windows/certagent.wxs || return 1
    grep -q 'InstallScope="perMachine"' packaging/windows/certagent.wxs || {
        echo "not InstallScope=\"perMachine\""
        rc=1
    }
    grep -q 'Root="HKLM" Key="SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"' packaging/windows/certagent.wxs || {
        echo "no HKLM Run value"
        rc=1
    }
    grep -q 'bcryptprimitives' packaging/windows/certagent.wxs && {
        echo "the MSI must not ship Wine's stand-in bcryptprimitives.dll"
        rc=1
    }
    for f in drivers/*.toml; do
        grep -qF "Source=\"$f\"" packaging/windows/certagent.wxs || {
            echo "packaging/windows/certagent.wxs does not install $f"
            rc=1
        }
    done
    return $rc
}
check "WiX definition (wixl): well-formed, per-machine, HKLM Run key, every driver profile" wix_ok

plist_ok() {
    local f
    for f in packaging/macos/*.plist; do
        xmllint --noout "$f" || return 1
    done
    grep -q '<string>/Applications/certagent.app/Contents/MacOS/certagent</string>' packaging/macos/org.certagent.agent.plist &&
        grep -q '<key>RunAtLoad</key>' packaging/macos/org.certagent.agent.plist &&
        grep -q '<key>Crashed</key>' packaging/macos/org.certagent.agent.plist
}
check "macOS LaunchAgent and Info.plist: well-formed, RunAtLoad, KeepAlive on crash" plist_ok

# --- remove ------------------------------------------------------------------------
say "removing it (dpkg -r, then dpkg --purge for its conffile and unit enablement)"
removed() {
    as_root dpkg -r certagent >"$work/remove.log" 2>&1 || {
        cat "$work/remove.log"
        return 1
    }
    [ ! -e /usr/bin/certagent ] && [ ! -e /usr/bin/certagent-bank ] || {
        echo "binaries still there after dpkg -r"
        return 1
    }
    as_root dpkg --purge certagent >>"$work/remove.log" 2>&1 || {
        cat "$work/remove.log"
        return 1
    }
    ! dpkg-query -W certagent >/dev/null 2>&1 || {
        echo "dpkg still knows certagent after --purge"
        return 1
    }
    snapshot >"$work/after"
    diff -u "$work/before" "$work/after" || {
        echo "the machine is not as it was before the install (above)"
        return 1
    }
}
check "dpkg -r and --purge leave the machine as it was" removed
installed_by_us=0

say "took $((SECONDS - started)) s"
if [ "$failed" -ne 0 ]; then
    echo "package test: FAILED: $failed of $((passed + failed)) checks, see FAIL above" >&2
fi
echo "package test: $passed passed, $failed failed"
[ "$failed" -eq 0 ] || exit 1
