"""Kernel plumbing: network namespaces, bridges and veth pairs, over netlink.

A container's network namespace is a file under ``RUNROOT/netns`` with the
namespace bind-mounted on it, like ``ip netns add`` does under /run/netns: it
outlives any process, runc joins it by path, and unmounting it destroys the
namespace -- and with it the container's veth pair, both ends, asynchronously: a
stop deletes nothing else (deleting a veth by hand waits ~30 ms for the kernel).
The directory is made a shared mount point, as iproute2 does, so an unmount reaches
copies of the mount in other mount namespaces and cannot leak the namespace.

Links, addresses and routes are set with netlink requests (netlink.py), no process.
The container's side is configured through a netlink socket created inside its
namespace by a short-lived worker thread (the one that unshare()s or setns()es); the
process's main thread never leaves the host's namespace. Those sockets are cached
per namespace file until ``release_netns_sockets`` or ``delete_netns``: an open socket
keeps its namespace alive.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from dockyard.network import netlink
from dockyard.network.netlink import NetlinkError as NetlinkError
from dockyard.network.netlink import NetworkError as NetworkError

if TYPE_CHECKING:
    import ctypes

CLONE_NEWNET = 0x40000000
MS_BIND = 4096
MS_REC = 16384
MS_SHARED = 1 << 20
MNT_DETACH = 2

T = TypeVar("T")

_libc_handle: ctypes.CDLL | None = None
_host: netlink.Netlink | None = None
_netns_sockets: dict[str, netlink.Netlink] = {}


def _libc() -> ctypes.CDLL:
    """libc for mount/umount2/unshare/setns (ctypes is imported only when needed)."""
    global _libc_handle
    if _libc_handle is None:
        import ctypes

        lib = ctypes.CDLL(None, use_errno=True)
        lib.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_void_p]
        lib.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        lib.unshare.argtypes = [ctypes.c_int]
        lib.setns.argtypes = [ctypes.c_int, ctypes.c_int]
        _libc_handle = lib
    return _libc_handle


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int) -> None:
    raw = [s.encode() if s is not None else None for s in (src, target, fstype)]
    _check(_libc().mount(raw[0], raw[1], raw[2], flags, None), f"mount {src} on {target}")


def _is_mountpoint(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def host() -> netlink.Netlink:
    """This process's netlink socket in the host's namespace (made by the main thread)."""
    global _host
    if _host is None:
        _host = netlink.Netlink()
    return _host


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


def _in_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a new thread, whose namespace changes die with it."""
    import threading

    result: list[Any] = []
    failure: list[BaseException] = []

    def run() -> None:
        try:
            result.append(fn())
        except BaseException as err:  # re-raised by the caller
            failure.append(err)

    worker = threading.Thread(target=run, name="dockyard-netns")
    worker.start()
    worker.join()
    if failure:
        raise failure[0]
    return result[0]


def _shared_dir(directory: Path) -> None:
    path = str(directory)
    try:
        _mount(None, path, None, MS_SHARED | MS_REC)  # already a mount point: done
        return
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOENT):
            raise
    directory.mkdir(parents=True, exist_ok=True)
    if not _is_mountpoint(path):
        _mount(path, path, None, MS_BIND | MS_REC)
    _mount(None, path, None, MS_SHARED | MS_REC)


def create_netns(path: Path) -> None:
    """A new network namespace pinned on ``path`` (replacing a stale one there), with
    loopback up; its netlink socket is kept for ``netns_socket``."""
    try:
        _shared_dir(path.parent)
    except OSError as err:
        raise NetworkError(f"cannot prepare {path.parent} for network namespaces: {err}") from err
    delete_netns(path)
    path.touch(mode=0o444)

    def pin() -> netlink.Netlink:
        # unshare() moves only this thread; the thread ends after the bind mount.
        import threading

        _check(_libc().unshare(CLONE_NEWNET), "unshare(CLONE_NEWNET)")
        _mount(f"/proc/self/task/{threading.get_native_id()}/ns/net", str(path), None, MS_BIND)
        sock = netlink.Netlink()
        try:
            sock.set_link(netlink.LOOPBACK_INDEX, up=True)
        except BaseException:
            sock.close()
            raise
        return sock

    try:
        _netns_sockets[str(path)] = _in_thread(pin)
    except (OSError, NetworkError) as err:
        delete_netns(path)
        raise NetworkError(f"cannot create network namespace {path}: {err}") from err


def netns_socket(path: str) -> netlink.Netlink:
    """A netlink socket acting inside the namespace pinned on ``path``."""
    sock = _netns_sockets.get(path)
    if sock is not None:
        return sock
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise NetworkError(f"cannot open network namespace {path}: {err}") from err
    try:

        def enter() -> netlink.Netlink:
            _check(_libc().setns(fd, CLONE_NEWNET), f"setns({path})")
            return netlink.Netlink()

        sock = _in_thread(enter)
    except OSError as err:
        raise NetworkError(f"cannot enter network namespace {path}: {err}") from err
    finally:
        os.close(fd)
    _netns_sockets[path] = sock
    return sock


def release_netns_sockets(path: str | None = None) -> None:
    """Close the cached sockets of ``path`` (of every namespace when None)."""
    for key in [path] if path else list(_netns_sockets):
        sock = _netns_sockets.pop(key, None)
        if sock is not None:
            sock.close()


def delete_netns(path: Path) -> None:
    """Unpin and remove a namespace file; nothing happens when it is gone already.

    The namespace dies with its last user, and with it every interface inside and the
    peers of its veths (in the kernel's own time, a few milliseconds later).
    """
    release_netns_sockets(str(path))
    target = str(path).encode()
    while _libc().umount2(target, MNT_DETACH) == 0:
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
    nl = host()
    if not link_exists(name):
        # A fixed MAC: left alone, a bridge takes its ports' lowest MAC and changes it as
        # containers come and go, and containers' ARP entries for the gateway go stale.
        mac = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        nl.add_bridge(name, mac=mac, mtu=mtu)
    else:
        nl.set_link(name, mtu=mtu)
    # route_localnet lets DNAT of 127.0.0.1 traffic leave through the bridge.
    write_sysctl(f"/proc/sys/net/ipv4/conf/{name}/route_localnet", "1")
    write_sysctl(f"/proc/sys/net/ipv6/conf/{name}/disable_ipv6", "1")
    index = nl.link_index(name)
    if index is None:
        raise NetworkError(f"bridge {name} vanished while being set up")
    nl.add_address(index, gateway, prefixlen, replace=True)
    nl.set_link(index, up=True)


def delete_link(name: str) -> None:
    """Delete a host link if it exists; failures are ignored (clean-up paths)."""
    if name and link_exists(name):
        try:
            host().delete_link(name)
        except NetworkError:
            pass


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
    nl = host()
    delete_link(host_if)  # a stale end left by a crash
    master = nl.link_index(bridge)
    if master is None:
        raise NetworkError(f"bridge {bridge} does not exist")
    try:
        fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise NetworkError(f"cannot open network namespace {netns}: {err}") from err
    try:
        # the host's end up and in the bridge, the container's with its MAC, in its namespace
        nl.add_veth(host_if, container_if, peer_netns_fd=fd, mtu=mtu, master=master, peer_mac=mac)
    finally:
        os.close(fd)
    try:
        # hairpin: with br_netfilter, a container's packet to a published port of its
        # own is DNATed at the bridge and must go back out of the port it came in by
        nl.set_hairpin(host_if)
        inside = netns_socket(netns)
        index = inside.link_index(container_if)
        if index is None:
            raise NetworkError(f"{container_if} did not appear in {netns}")
        inside.set_link(index, up=True)
        inside.add_address(index, ip, prefixlen)
        if gateway:
            inside.add_default_route(gateway, index)
    except BaseException:
        delete_link(host_if)
        raise


def detach_veth(host_if: str | None, netns: str | None, container_if: str | None) -> None:
    """Remove a veth pair from either end; quiet when it is gone."""
    try:
        if host_if and host().delete_link(host_if):
            return
        if netns and container_if and netns_alive(netns):
            netns_socket(netns).delete_link(container_if)
    except NetworkError:
        pass


def set_default_route(netns: str, gateway: str, container_if: str) -> None:
    inside = netns_socket(netns)
    index = inside.link_index(container_if)
    if index is not None:
        inside.add_default_route(gateway, index)
