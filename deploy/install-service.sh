#!/usr/bin/env bash
# Installs the gsdnet daemon as a systemd service on this machine (run as root).
#   deploy/install-service.sh --board boards/jetson-orin-nano-8gb.toml [--binary PATH]
#       [--models DIR] [--socket-activation] [--no-start]
# Copies the binary to /usr/local/bin, models and docs to /opt/gsdnet, the board profile to
# /etc/gsdnet/board.toml (models = "models" there resolves to /opt/gsdnet/models), creates the
# system user and group `gsdnet` and the unit's state directory /var/lib/gsdnet (so that
# `sudo -u gsdnet gsdnet warmup` can fill the TensorRT cache before the first start), installs
# the unit(s), checks the profile and starts the service.
set -euo pipefail

repo="$(cd "$(dirname "$0")/.." && pwd)"
board="" binary="$repo/target/release/gsdnet" models="$repo/models" socket=0 start=1
while [ $# -gt 0 ]; do
    case "$1" in
        --board) board="$2"; shift 2 ;;
        --binary) binary="$2"; shift 2 ;;
        --models) models="$2"; shift 2 ;;
        --socket-activation) socket=1; shift ;;
        --no-start) start=0; shift ;;
        -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
        *) echo "unknown option: $1" >&2; exit 2 ;;
    esac
done
[ -n "$board" ] || { echo "--board is required (one of $repo/boards/*.toml)" >&2; exit 2; }
[ "$(id -u)" -eq 0 ] || { echo "run as root" >&2; exit 1; }
[ -x "$binary" ] || { echo "no binary at $binary (cargo build --release first)" >&2; exit 1; }
[ -d "$models" ] || { echo "no model folder at $models" >&2; exit 1; }

"$binary" check-config --board "$board" > /dev/null

# The unit runs as gsdnet:gsdnet and gsdnet.socket gives its socket to group gsdnet.
id gsdnet >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin gsdnet
for g in dialout video render; do
    getent group "$g" >/dev/null && usermod -a -G "$g" gsdnet
done

install -D -m 0755 "$binary" /usr/local/bin/gsdnet
install -d -m 0755 /opt/gsdnet /opt/gsdnet/docs /etc/gsdnet
rm -rf /opt/gsdnet/models
cp -r "$models" /opt/gsdnet/models
install -m 0644 "$repo/docs/SERVICE.md" "$repo/docs/PROTOCOL.md" /opt/gsdnet/docs/
install -m 0644 "$board" /etc/gsdnet/board.toml
# Same owner and mode as the unit's StateDirectory= / StateDirectoryMode=, which adopts it.
install -d -o gsdnet -g gsdnet -m 0750 /var/lib/gsdnet
install -m 0644 "$repo/deploy/gsdnet.service" /etc/systemd/system/gsdnet.service
if [ "$socket" -eq 1 ]; then
    install -m 0644 "$repo/deploy/gsdnet.socket" /etc/systemd/system/gsdnet.socket
fi

# Unknown keys (an older systemd) are ignored by systemd with a warning; show them here.
systemd-analyze verify /etc/systemd/system/gsdnet.service >&2 \
    || echo "install-service: systemd-analyze verify complained (see above); the unit still loads" >&2
systemctl daemon-reload
if [ "$start" -eq 1 ]; then
    if [ "$socket" -eq 1 ]; then systemctl enable --now gsdnet.socket; fi
    systemctl enable --now gsdnet.service
    systemctl --no-pager status gsdnet.service || true
fi
echo "installed; logs: journalctl -u gsdnet -f"
