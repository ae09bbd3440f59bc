#!/usr/bin/env bash
# npm may skip Hardhat's native EDR package (an optional, platform-specific dependency);
# Hardhat cannot run without it. Install the build that matches @nomicfoundation/edr's version.
set -euo pipefail
cd "$(dirname "$0")/.."
edr_pkg=node_modules/@nomicfoundation/edr/package.json
if [[ ! -f $edr_pkg ]]; then
  echo "ensure-edr: $edr_pkg is missing; run 'npm install' first" >&2
  exit 1
fi
version=$(node -p "require('./$edr_pkg').version")
case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) native=edr-linux-x64-gnu ;;
  Linux-aarch64) native=edr-linux-arm64-gnu ;;
  Darwin-arm64) native=edr-darwin-arm64 ;;
  Darwin-x86_64) native=edr-darwin-x64 ;;
  *) echo "ensure-edr: no EDR build known for $(uname -s)-$(uname -m)" >&2; exit 1 ;;
esac
native_pkg=node_modules/@nomicfoundation/$native/package.json
if [[ -f $native_pkg ]] && [[ $(node -p "require('./$native_pkg').version") == "$version" ]]; then
  exit 0
fi
echo "ensure-edr: installing @nomicfoundation/$native@$version (npm skipped it)"
npm install --no-save --no-audit --no-fund "@nomicfoundation/$native@$version"
[[ -f $native_pkg ]] || { echo "ensure-edr: @nomicfoundation/$native still missing after install" >&2; exit 1; }
