"""Kernel plumbing: network namespaces, bridges and veth pairs.

A container's network namespace is a file under ``RUNROOT/netns`` with the
namespace bind-mounted on it, like ``ip netns add`` does under /run/netns: it
outlives any process, runc joins it by path, and unmounting it destroys the
namespace (and with it the container's end of every veth pair). The directory is
made a shared mount point, as iproute2 does, so an unmount reaches copies of the
mount in other mount namespaces and cannot leak the namespace.

Links and addresses are set with iproute2's ``ip -batch`` (one process per step).
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import threading
from pathlib import Path

from dockyard.errors import DockyardError

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
MS_SHARED = 1 << 20
MNT_DETACH = 2

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def _mount(src: str | None, target: str, fstype: str | None, flags: int) -> None:
    raw = [s.encode() if s is not None else None for s in (src, target, fstype)]
    if _libc.mount(raw[0], raw[1], raw[2], flags, None) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {src} on {target}: {os.strerror(err)}")


def _is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


class NetworkError(DockyardError):
    """A kernel networking step failed."""


def ip_batch(commands: list[str], netns: str | None = None, check: bool = True) -> str:
    """Run iproute2 commands in one process, optionally inside a namespace file."""
    argv = ["ip", "-batch", "-"]
    if netns:
        argv = ["nsenter", f"--net={netns}", "--", *argv]
    proc = subprocess.run(argv, input="\n".join(commands) + "\n", capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetworkError(f"network setup failed: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc.stdout


def link_exists(name: str) -> bool:
    return os.path.exists(f"/sys/class/net/{name}")


def write_sysctl(path: str, value: str) -> None:
    try:
        with open(path, "w") as f:
            f.write(value)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise NetworkError(f"cannot set {path} to {value}: {err}") from err


def enable_forwarding() -> None:
    """Routed container traffic needs IPv4 forwarding (Docker turns it on too)."""
    if Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() != "1":
        write_sysctl("/proc/sys/net/ipv4/ip_forward", "1")


# -- namespaces -------------------------------------------------------------


def _shared_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    path = str(directory)
    if not _is_mountpoint(path):
        _mount(path, path, None, MS_BIND | MS_REC)
    _mount(None, path, None, MS_SHARED | MS_REC)


def create_netns(path: Path) -> None:
    """A new network namespace pinned on ``path`` (replacing a stale one there)."""
    _shared_dir(path.parent)
    delete_netns(path)
    path.touch(mode=0o444)
    failure: list[BaseException] = []

    def pin() -> None:
        # unshare() moves only this thread; the thread dies after the bind mount.
        try:
            if _libc.unshare(CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"unshare(CLONE_NEWNET): {os.strerror(err)}")
            _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), None, MS_BIND)
        except BaseException as err:  # reported by the caller
            failure.append(err)

    worker = threading.Thread(target=pin, name="dockyard-netns")
    worker.start()
    worker.join()
    if failure:
        path.unlink(missing_ok=True)
        raise NetworkError(f"cannot create network namespace {path}: {failure[0]}")
    ip_batch(["link set lo up"], netns=str(path))


def delete_netns(path: Path) -> None:
    """Unpin and remove a namespace file; nothing happens when it is gone already."""
    target = str(path).encode()
    while _libc.umount2(target, MNT_DETACH) == 0:
        pass
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        os.rmdir(path)


def netns_alive(path: str) -> bool:
    return os.path.exists(path) and _is_mountpoint(path)


# -- bridges and veth pairs ---------------------------------------------------


def ensure_bridge(name: str, gateway: str, prefixlen: int, mtu: int = 1500) -> None:
    """Create the bridge with the gateway address, up, ready for localhost DNAT."""
    cmds = []
    if not link_exists(name):
        # A fixed MAC: left alone, a bridge takes its ports' lowest MAC and changes it as
        # containers come and go, and containers' ARP entries for the gateway go stale.
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        cmds.append(f"link add {name} address {mac} type bridge")
    cmds += [
        f"link set {name} mtu {mtu}",
        f"address replace {gateway}/{prefixlen} dev {name}",
        f"link set {name} up",
    ]
    ip_batch(cmds)
    # route_localnet lets DNAT of 127.0.0.1 traffic leave through the bridge.
    write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")


def delete_link(name: str) -> None:
    if name and link_exists(name):
        ip_batch([f"link del {name}"], check=False)


def attach_veth(
    *,
    bridge: str,
    host_if: str,
    netns: str,
    container_if: str,
    ip: str,
    prefixlen: int,
    mac: str,
    gateway: str | None,
    mtu: int = 1500,
) -> None:
    """A veth pair: one end in the bridge, the other configured inside the namespace."""
    delete_link(host_if)  # a stale end left by a crash
    ip_batch(
        [
            f"link add {host_if} mtu {mtu} type veth peer name {container_if} mtu {mtu} "
            f"netns {netns}",
            f"link set {host_if} master {bridge}",
            # hairpin: with br_netfilter, a container's packet to a published port of its
            # own is DNATed at the bridge and must go back out of the port it came in by
            f"link set {host_if} type bridge_slave hairpin on",
            f"link set {host_if} up",
        ]
    )
    cmds = [
        f"link set {container_if} address {mac}",
        f"address add {ip}/{prefixlen} dev {container_if}",
        f"link set {container_if} up",
    ]
    if gateway:
        cmds.append(f"route replace default via {gateway} dev {container_if}")
    try:
        ip_batch(cmds, netns=netns)
    except NetworkError:
        delete_link(host_if)
        raise


def detach_veth(host_if: str | None, netns: str | None, container_if: str | None) -> None:
    """Remove a veth pair from either end; quiet when it is gone."""
    if host_if:
        delete_link(host_if)
    if netns and container_if and netns_alive(netns):
        ip_batch([f"link del {container_if}"], netns=netns, check=False)


def set_default_route(netns: str, gateway: str, container_if: str) -> None:
    ip_batch([f"route replace default via {gateway} dev {container_if}"], netns=netns, check=False)
