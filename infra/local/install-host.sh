#!/usr/bin/env bash
# Installs the Debian packages the local reference platform runs, only when one is missing,
# so `make setup` stays fast on a machine that already has them.
set -euo pipefail

# binary -> Debian package that provides it
declare -A NEED=(
  [redis-server]=redis-server
  [redis-sentinel]=redis-sentinel
  [prometheus]=prometheus
  [promtool]=prometheus
  [prometheus-redis-exporter]=prometheus-redis-exporter
  [haproxy]=haproxy
  [ip]=iproute2
  [tc]=iproute2
  [nft]=nftables
  [unshare]=util-linux
  [nsenter]=util-linux
)

# `--test` adds what only the test suite needs: Chromium renders the HTML scorecard.
if [ "${1:-}" = "--test" ]; then
  NEED[chromium]=chromium
fi

missing=()
for bin in "${!NEED[@]}"; do
  if ! PATH="$PATH:/usr/sbin:/sbin" command -v "$bin" >/dev/null 2>&1; then
    missing+=("${NEED[$bin]}")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" -ne 0 ]; then
  echo "gameday: missing Debian packages: $pkgs" >&2
  echo "gameday: install them as root: sudo apt-get install -y $pkgs" >&2
  exit 2
fi
echo "gameday: installing Debian packages: $pkgs"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# The services are started by gameday itself, inside its private world: keep the
# packages' own systemd units from starting copies on the host.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
