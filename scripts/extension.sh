#!/usr/bin/env bash
# Builds the certagent browser extension from packaging/extension/ into
#   target/extension/certagent-extension.zip  Chromium, Chrome, Edge (the
#                                             files at the archive's root)
#   target/extension/certagent-extension.xpi  Firefox (the same files)
# reproducibly: the same source gives the same bytes (sorted entries, fixed
# timestamps and modes). ($CARGO_TARGET_DIR instead of target/ where set.)
#
# Checks first that manifest.json's version is the workspace's
# ([workspace.package] version in Cargo.toml), that ids.json's Chromium ID
# is the one manifest.json's "key" gives, and that the icons are the tray's
# "valid" icons (packaging/icons/hicolor/*/status/certagent-valid.png).
# Needs python3 (3.11 or later, for tomllib) only.
set -euo pipefail
cd "$(dirname "$0")/.."

out="${CARGO_TARGET_DIR:-target}/extension"
mkdir -p "$out"

python3 - "$out" <<'PY'
import base64
import hashlib
import json
import pathlib
import sys
import tomllib
import zipfile

out = pathlib.Path(sys.argv[1])
src = pathlib.Path("packaging/extension")
# Documentation and the IDs for the host manifests: not part of the extension.
LEFT_OUT = {"README.md", "ids.json"}


def die(message):
    print(f"extension: {message}", file=sys.stderr)
    sys.exit(1)


with open("Cargo.toml", "rb") as f:
    cargo = tomllib.load(f)
version = cargo["workspace"]["package"]["version"]
manifest = json.loads((src / "manifest.json").read_text(encoding="utf-8"))
if manifest.get("version") != version:
    die(f"manifest.json says version {manifest.get('version')!r}, Cargo.toml {version!r}")

# The Chromium extension ID: the first 128 bits of SHA-256 of the public key
# (DER SubjectPublicKeyInfo), one letter a-p for each hex digit.
key = base64.b64decode(manifest["key"])
chromium_id = "".join(
    chr(ord("a") + int(c, 16)) for c in hashlib.sha256(key).hexdigest()[:32]
)
ids = json.loads((src / "ids.json").read_text(encoding="utf-8"))
if ids.get("chromium") != chromium_id:
    die(f"ids.json names Chromium ID {ids.get('chromium')!r}; the key gives {chromium_id!r}")
gecko_id = manifest["browser_specific_settings"]["gecko"]["id"]
if ids.get("firefox") != gecko_id:
    die(f"ids.json names Firefox ID {ids.get('firefox')!r}; manifest.json {gecko_id!r}")

for size in manifest["icons"]:
    icon = src / manifest["icons"][size]
    tray = pathlib.Path(f"packaging/icons/hicolor/{size}x{size}/status/certagent-valid.png")
    if icon.read_bytes() != tray.read_bytes():
        die(f"{icon} is not {tray}: copy it again")

files = sorted(
    p.relative_to(src).as_posix()
    for p in src.rglob("*")
    if p.is_file() and p.relative_to(src).as_posix() not in LEFT_OUT
)
for needed in ["manifest.json", "background.js", "content.js"]:
    if needed not in files:
        die(f"{needed} is missing")


def build(path):
    tmp = path.with_suffix(path.suffix + ".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        for name in files:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.create_system = 3  # Unix, for the mode below
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, (src / name).read_bytes(), compresslevel=9)
    tmp.replace(path)
    data = path.read_bytes()
    print(f"extension: built {path} ({len(data)} bytes, sha256 {hashlib.sha256(data).hexdigest()})")


build(out / "certagent-extension.zip")
build(out / "certagent-extension.xpi")
print(f"extension: version {version}; {len(files)} files: {' '.join(files)}")
print(f"extension: Chromium ID {chromium_id} (allowed_origins: chrome-extension://{chromium_id}/)")
print(f"extension: Firefox ID {gecko_id} (allowed_extensions)")
PY
