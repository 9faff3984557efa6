#!/usr/bin/env bash
# Prepares .deps/ (git-ignored) with what the GPU machine lacks and cannot fetch: the CLI11 and
# nlohmann-json headers and the GoogleTest sources, unpacked from Debian's packages. Run it here,
# then carry `.deps` in the device run; scripts/gpu-check.sh picks it up.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.deps"
[ -d "$dest/root/usr/src/googletest" ] && [ -d "$dest/root/usr/include/CLI" ] && exit 0
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download libcli11-dev nlohmann-json3-dev googletest >/dev/null)
mkdir -p "$dest/root"
for deb in "$tmp"/*.deb; do dpkg -x "$deb" "$dest/root"; done
echo "fp4kit: prepared $dest ($(du -sh "$dest" | cut -f1)); carry it as .deps"
