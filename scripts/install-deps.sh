#!/usr/bin/env bash
# Installs what building and testing fp4kit needs, from Debian's packages, when it is missing.
# Idempotent and quick when everything is there (it only asks dpkg). Run by `make` and by .ci/run.
set -euo pipefail

packages=(cmake g++ make libgtest-dev nlohmann-json3-dev libcli11-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "fp4kit: installing missing packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "fp4kit: not root and no sudo; install them with: apt-get install ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
