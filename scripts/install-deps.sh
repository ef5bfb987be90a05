#!/usr/bin/env bash
# Installs the Debian packages kiln's build and tests need, when any is missing.
# Runs apt-get as root, or through sudo otherwise.
set -euo pipefail

pkgs=(build-essential cmake pkg-config libcmocka-dev libprotobuf-c-dev protobuf-c-compiler libonnx-dev protobuf-compiler
      python3 python3-venv python3-pip)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
