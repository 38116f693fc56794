#!/usr/bin/env bash
# Installs dockyard and everything it needs on Debian 12 (run as root), then runs
# a first container from a busybox image made from Debian's busybox-static.
set -euo pipefail
cd "$(dirname "$0")"

packages=(runc busybox-static tini gcc libc6-dev iproute2 nftables iptables procps
          python3-venv docker-registry skopeo openssl debootstrap util-linux git)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the registry's system service on install; the tests run their own.
  if command -v systemctl >/dev/null && systemctl is-active -q docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

python=$(command -v python3.11 || command -v python3)
[ -x .venv/bin/python ] || "$python" -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev,test]' --config-settings editable_mode=compat
# byte-compile now: every container start imports these modules
.venv/bin/python -m compileall -q src/dockyard >/dev/null
ln -sf "$PWD/.venv/bin/dockyard" /usr/local/bin/dockyard
.venv/bin/python -c 'from dockyard.runtime.monitor import monitor_binary; monitor_binary()'
.venv/bin/python -c 'from dockyard import cbuild; from dockyard.network import proxy; cbuild.binary(proxy.SOURCE, proxy.BINARY_PREFIX, "port proxy")'

if [ "${1:-}" != "--no-demo" ]; then
  scripts/busybox-rootfs.sh | dockyard import - busybox:latest >/dev/null
  dockyard run --rm busybox:latest echo "dockyard works: hello from a busybox container"
fi
