#!/usr/bin/env bash
# Debian packages the test suite uses as independent references (ipfs_cid for CIDv0 checks).
set -euo pipefail
command -v ipfs_cid >/dev/null && exit 0
if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null; then
  echo "ensure-apt: ipfs_cid is missing; install Debian's ipfs-cid package (needs root and apt-get)" >&2
  exit 1
fi
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ipfs-cid
command -v ipfs_cid >/dev/null
