#!/usr/bin/env bash
# Checks the systemd units offline (no running systemd needed); scripts/test.sh runs it first.
#   deploy/check-unit.sh [--max LEVEL]        (default 2.5, docs/SERVICE.md "Sandboxing")
# 1. `systemd-analyze security --offline=yes deploy/gsdnet.service`: fails when the overall
#    exposure level is above LEVEL, printing the settings that still count against it.
# 2. `systemd-analyze verify` of gsdnet.service and gsdnet.socket inside a scratch root that holds
#    a stand-in /usr/local/bin/gsdnet: fails on any unknown key, bad value or other complaint.
# Installs the Debian package `systemd` (apt-get, non-interactive, as root) when systemd-analyze
# is missing, as on CI images.
set -euo pipefail
cd "$(dirname "$0")/.."

max=2.5
while [ $# -gt 0 ]; do
    case "$1" in
        --max) max="$2"; shift 2 ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "check-unit: unknown option: $1" >&2; exit 2 ;;
    esac
done
service=deploy/gsdnet.service
socket=deploy/gsdnet.socket

if ! command -v systemd-analyze >/dev/null; then
    if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
        echo "check-unit: systemd-analyze is missing; install the systemd package (needs root and apt-get to do it here)" >&2
        exit 1
    fi
    echo "check-unit: installing the systemd package for systemd-analyze" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends systemd >/dev/null
fi

# --offline= (security) and --recursive-errors= (verify) are systemd 250+.
version=$(systemd-analyze --version | awk 'NR == 1 { print $2 + 0 }')
if [ "${version:-0}" -lt 250 ]; then
    echo "check-unit: systemd-analyze $version is too old (offline analysis needs systemd 250+)" >&2
    exit 1
fi

report=$(systemd-analyze security --offline=yes --no-pager "$service" 2>&1) || {
    printf '%s\n' "$report" >&2
    echo "check-unit: systemd-analyze security failed on $service" >&2
    exit 1
}
level=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: *\([0-9][0-9.]*\).*/\1/p' | tail -n 1)
if [ -z "$level" ]; then
    printf '%s\n' "$report" >&2
    echo "check-unit: no 'Overall exposure level' in the systemd-analyze output" >&2
    exit 1
fi
if awk -v l="$level" -v m="$max" 'BEGIN { exit !(l + 0 > m + 0) }'; then
    printf '%s\n' "$report" | grep '✗' | tr -s ' ' >&2 || true
    echo "check-unit: FAIL: $service exposure level $level is above $max (settings above still count)" >&2
    exit 1
fi
echo "check-unit: $service exposure level $level (limit $max)"

# verify resolves ExecStart= and wants the units inside --root; the stand-in binary is never run.
root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system"
printf '#!/bin/sh\nexit 0\n' > "$root/usr/local/bin/gsdnet"
chmod 0755 "$root/usr/local/bin/gsdnet"
cp "$service" "$socket" "$root/etc/systemd/system/"
units=("$root/etc/systemd/system/gsdnet.service" "$root/etc/systemd/system/gsdnet.socket")
if ! out=$(systemd-analyze verify --man=no --recursive-errors=no --root="$root" "${units[@]}" 2>&1) \
        || [ -n "$out" ]; then
    printf '%s\n' "$out" | sed "s|$root/etc/systemd/system/|deploy/|g" >&2
    echo "check-unit: FAIL: systemd-analyze verify complained about the units" >&2
    exit 1
fi
echo "check-unit: systemd-analyze verify: gsdnet.service, gsdnet.socket clean"
