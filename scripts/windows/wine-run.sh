#!/bin/sh
# Run a Windows program under Debian's Wine (8.0), headless: no Gecko or
# Mono installer dialogs, no debug noise. WINEPREFIX is the caller's (the
# scripts give each run a prefix of its own under target/windows/).
# Debian keeps wine64 out of PATH (/usr/lib/wine/wine64; `wine` is a
# wrapper that picks it); WINELOADER lets the programs it starts find it.
export WINEDEBUG="${WINEDEBUG:--all}"
export WINEDLLOVERRIDES="${WINEDLLOVERRIDES:-mscoree,mshtml=}"
export WINELOADER="${WINELOADER:-/usr/lib/wine/wine64}"
exec /usr/lib/wine/wine64 "$@"
