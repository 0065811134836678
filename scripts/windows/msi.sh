#!/usr/bin/env bash
# Build OUTDIR/certagent.msi (packaging/windows/certagent.wxs) with wixl from
# what `scripts/windows.sh build` put in OUTDIR (certagent.exe,
# certagent-bank.exe, softhsm2-x64.dll) and from the repository
# (packaging/config.example.toml, drivers/*.toml).
#
#   scripts/windows/msi.sh OUTDIR
#
# The files are staged in OUTDIR/msi-stage/ as the MSI lays them out:
# wixl looks for every Source relative to the folder it runs in. The
# programs are stripped copies (the debug builds carry over 100 MB of
# debugging information each); OUTDIR itself is left as it is. Only the
# files named here are staged, so Wine's stand-in bcryptprimitives.dll and
# the test-only programs beside them can never end up in the MSI.
set -euo pipefail
[ $# -eq 1 ] || {
    echo "usage: scripts/windows/msi.sh OUTDIR" >&2
    exit 2
}
[ -d "$1" ] || {
    echo "$1 is not a folder: run scripts/windows.sh build first" >&2
    exit 1
}
outdir="$(cd "$1" && pwd)"
cd "$(dirname "$0")/../.."
root="$(pwd)"
wxs="$root/packaging/windows/certagent.wxs"

for tool in wixl x86_64-w64-mingw32-strip; do
    command -v "$tool" >/dev/null || {
        echo "$tool is missing: apt-get install wixl gcc-mingw-w64-x86-64 (scripts/windows.sh build installs them)" >&2
        exit 1
    }
done
for f in certagent.exe certagent-bank.exe softhsm2-x64.dll; do
    [ -f "$outdir/$f" ] || {
        echo "$outdir/$f is missing: run scripts/windows.sh build" >&2
        exit 1
    }
done

# wixl has no wildcards: every driver profile needs its own component.
for f in drivers/*.toml; do
    grep -qF "Source=\"$f\"" "$wxs" || {
        echo "packaging/windows/certagent.wxs does not install $f: add a component for it" >&2
        exit 1
    }
done

# The MSI's ProductVersion: the workspace version, without any pre-release
# or build suffix (Windows Installer takes major.minor.build only).
version=$(sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml)
version="${version%%[-+]*}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || {
    echo "no major.minor.patch version in Cargo.toml's [workspace.package] (found '$version')" >&2
    exit 1
}

stage="$outdir/msi-stage"
rm -rf "$stage"
mkdir -p "$stage/drivers"
for f in certagent.exe certagent-bank.exe softhsm2-x64.dll; do
    x86_64-w64-mingw32-strip -o "$stage/$f" "$outdir/$f"
done
cp packaging/config.example.toml packaging/windows/certagent.ico "$stage/"
cp packaging/native-messaging/windows-chromium.json "$stage/certagent-chromium.json"
cp packaging/native-messaging/windows-firefox.json "$stage/certagent-firefox.json"
cp drivers/*.toml "$stage/drivers/"

(cd "$stage" && wixl -a x64 -D Version="$version" -o "$outdir/certagent.msi.part" "$wxs")
mv "$outdir/certagent.msi.part" "$outdir/certagent.msi"
rm -rf "$stage"
echo "built $outdir/certagent.msi (certagent $version, $(du -h "$outdir/certagent.msi" | cut -f1))" >&2
