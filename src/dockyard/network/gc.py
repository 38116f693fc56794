"""A host-wide record of which store made which kernel objects, to sweep orphans.

A store deleted without ``destroy_all`` (a test's temporary root, ``rm -rf`` of a
root) would leave its bridges, nftables table, DNS servers and namespace mounts
behind, with nothing left that names them. So each store notes its objects in
``/run/dockyard-netreg/<table>`` (``DOCKYARD_NET_REGISTRY`` overrides): its root and
runroot, then one ``bridge NAME`` line per bridge it ever made. ``sweep_orphans``
removes the objects of every store whose database is gone.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from dockyard.network import firewall, kernel
from dockyard.network.config import NetConfig


def registry_dir() -> Path:
    return Path(os.environ.get("DOCKYARD_NET_REGISTRY") or "/run/dockyard-netreg")


def note_bridge(cfg: NetConfig, root: Path, runroot: Path, bridge: str) -> None:
    """Record that the store at ``root`` made ``bridge`` (and owns cfg.table)."""
    try:
        directory = registry_dir()
        directory.mkdir(parents=True, exist_ok=True)
        entry = directory / cfg.table
        if not entry.exists():
            entry.write_text(f"root {root}\nrunroot {runroot}\niptables {cfg.iptables_prefix}\n")
        if f"bridge {bridge}\n" not in entry.read_text():
            with open(entry, "a") as f:
                f.write(f"bridge {bridge}\n")
    except OSError:
        pass  # bookkeeping only: never fail a network operation for it


def forget_store(cfg: NetConfig) -> None:
    (registry_dir() / cfg.table).unlink(missing_ok=True)


def _kill_dns_servers(db_path: str) -> None:
    """The store's DNS server and port proxies (their command lines name the store)."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        ours = b"dockyard.network.dns" in argv or any(b"dockyard-proxy" in a for a in argv[:1])
        if ours and db_path.encode() in argv:
            try:
                os.kill(int(pid), signal.SIGTERM)
            except ProcessLookupError:
                pass


def _unmount_under(prefix: str) -> None:
    import subprocess

    with open("/proc/self/mountinfo") as f:
        points = [line.split()[4] for line in f]
    for point in sorted(
        {p for p in points if p.startswith(prefix + "/") or p == prefix}, key=len, reverse=True
    ):
        subprocess.run(["umount", "-l", point], capture_output=True)


def sweep_orphans() -> list[str]:
    """Remove the kernel objects of stores whose database no longer exists; their roots."""
    swept: list[str] = []
    directory = registry_dir()
    if not directory.is_dir():
        return swept
    for entry in directory.iterdir():
        try:
            fields = [line.split(" ", 1) for line in entry.read_text().splitlines() if " " in line]
        except OSError:
            continue
        info: dict[str, list[str]] = {}
        for key, value in fields:
            info.setdefault(key, []).append(value)
        root = (info.get("root") or [""])[0]
        if not root or os.path.exists(os.path.join(root, "state.db")):
            continue
        _kill_dns_servers(os.path.join(root, "state.db"))
        for bridge in info.get("bridge", []):
            kernel.delete_link(bridge)
        prefix = (info.get("iptables") or ["DOCKYARD"])[0]
        suffix = entry.name.partition("_")[2]
        cfg = NetConfig(
            suffix=suffix,
            default_bridge="",
            default_subnet=None,
            default_gateway=None,
            default_pools=[],
            user_pools=[],
            resolv_conf="",
            firewall="nftables",
        )
        if cfg.iptables_prefix == prefix:
            try:
                firewall.apply(cfg, [], [])
            except Exception:
                pass
            cfg.firewall = "iptables"
            try:
                firewall.apply(cfg, [], [])
            except Exception:
                pass
        for runroot in info.get("runroot", []):
            _unmount_under(os.path.join(runroot, "netns"))
        entry.unlink(missing_ok=True)
        swept.append(root)
    return swept
