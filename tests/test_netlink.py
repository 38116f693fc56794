"""The rtnetlink client and the kernel plumbing built on it, on the real kernel.

Every test makes its own namespace file under tmp_path, its own bridge (a unique
``dyt`` name) with an address from a /24 that clashes with nothing on the host, and
removes all of it in ``finally``. Traffic goes only to that bridge's address.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.network import firewall, ipam, kernel
from dockyard.network.config import NetConfig, Pool
from dockyard.network.netlink import Netlink, NetlinkError, NetworkError
from dockyard.records import record

BUSYBOX = shutil.which("busybox") or "/bin/busybox"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


def _inside(netns: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nsenter", f"--net={netns}", *argv], capture_output=True, text=True, timeout=20
    )


def _wait_gone(name: str, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while os.path.exists(f"/sys/class/net/{name}"):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@record
class Lab:
    bridge: str
    veth: str
    subnet: ipaddress.IPv4Network
    gateway: str
    netns: Path


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A bridge with a gateway address, and a namespace file; all removed afterwards."""
    tag = os.urandom(4).hex()
    subnet = ipam.pick_subnet(
        [Pool(ipaddress.IPv4Network("10.250.0.0/16"), 24)], ipam.host_networks()
    )
    gateway = str(next(subnet.hosts()))
    lab = Lab(f"dyt{tag}", f"dyt{tag}h", subnet, gateway, tmp_path / "netns" / "c1")
    try:
        kernel.ensure_bridge(lab.bridge, gateway, subnet.prefixlen)
        kernel.create_netns(lab.netns)
        yield lab
    finally:
        kernel.release_netns_sockets()
        kernel.delete_netns(lab.netns)
        kernel.delete_link(lab.veth)
        kernel.delete_link(lab.bridge)
        subprocess.run(["umount", "-l", str(lab.netns.parent)], capture_output=True)
        assert not os.path.exists(f"/sys/class/net/{lab.bridge}")


def test_namespace_has_loopback_up(lab: Lab) -> None:
    assert os.path.ismount(lab.netns)
    links = _inside(lab.netns, "ip", "-o", "link").stdout
    assert links.count("\n") == 1 and "lo:" in links and "UP" in links.split("lo:")[1]
    # a socket made in the namespace sees its interfaces, not the host's
    kernel.release_netns_sockets()
    inside = kernel.netns_socket(str(lab.netns))
    assert inside.link_index("lo") == 1 and inside.link_index(lab.bridge) is None
    assert kernel.host().link_index(lab.bridge)


def test_bridge_is_configured(lab: Lab) -> None:
    out = subprocess.run(
        ["ip", "-o", "-4", "addr", "show", "dev", lab.bridge], capture_output=True, text=True
    ).stdout
    assert f"inet {lab.gateway}/{lab.subnet.prefixlen}" in out
    assert int(Path(f"/sys/class/net/{lab.bridge}/flags").read_text(), 16) & 1  # IFF_UP
    assert Path(f"/proc/sys/net/ipv4/conf/{lab.bridge}/route_localnet").read_text() == "1\n"
    # ensure_bridge again is harmless (replace, not add)
    kernel.ensure_bridge(lab.bridge, lab.gateway, lab.subnet.prefixlen)
    # the host's networks, read over netlink, include the bridge's unless excluded
    assert lab.subnet in ipam.host_networks()
    assert lab.subnet not in ipam.host_networks([lab.bridge])


def test_veth_into_namespace_and_ping_gateway(lab: Lab) -> None:
    ip = str(list(lab.subnet.hosts())[4])
    mac = ipam.mac_for(ip)
    kernel.attach_veth(
        bridge=lab.bridge,
        host_if=lab.veth,
        netns=str(lab.netns),
        container_if="eth0",
        ip=ip,
        prefixlen=lab.subnet.prefixlen,
        mac=mac,
        gateway=lab.gateway,
        mtu=1400,
    )
    host_side = Path(f"/sys/class/net/{lab.veth}")
    assert (host_side / "master").resolve().name == lab.bridge
    assert (host_side / "brport/hairpin_mode").read_text().strip() == "1"
    assert (host_side / "mtu").read_text().strip() == "1400"
    addr = _inside(lab.netns, "ip", "-o", "-4", "addr", "show", "dev", "eth0").stdout
    assert f"inet {ip}/{lab.subnet.prefixlen}" in addr
    link = _inside(lab.netns, "ip", "-o", "link", "show", "dev", "eth0").stdout
    assert mac in link and "mtu 1400" in link and ",UP" in link
    route = _inside(lab.netns, "ip", "route").stdout
    assert f"default via {lab.gateway} dev eth0" in route
    ping = _inside(lab.netns, BUSYBOX, "ping", "-c1", "-W2", lab.gateway)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    # removing the namespace removes the pair, both ends (in the kernel's own time)
    kernel.delete_netns(lab.netns)
    assert not lab.netns.exists()
    assert _wait_gone(lab.veth)


def test_detach_veth_from_either_end(lab: Lab) -> None:
    nl = kernel.host()
    fd = os.open(lab.netns, os.O_RDONLY)
    try:
        nl.add_veth(lab.veth, "eth1", peer_netns_fd=fd)
    finally:
        os.close(fd)
    assert "eth1" in _inside(lab.netns, "ip", "-o", "link").stdout
    kernel.detach_veth(lab.veth, str(lab.netns), "eth1")
    assert not os.path.exists(f"/sys/class/net/{lab.veth}")
    assert "eth1" not in _inside(lab.netns, "ip", "-o", "link").stdout
    kernel.detach_veth(lab.veth, str(lab.netns), "eth1")  # quiet when gone


def test_errors_carry_errno_and_text(lab: Lab) -> None:
    with Netlink() as nl:
        assert nl.link_index("dyt-nosuch") is None
        assert nl.delete_link("dyt-nosuch") is False
        with pytest.raises(NetlinkError) as exists:
            nl.add_bridge(lab.bridge)
        assert exists.value.errno == errno.EEXIST
        assert f"cannot create bridge {lab.bridge}: File exists" in str(exists.value)
        with pytest.raises(NetlinkError) as missing:
            nl.set_link("dyt-nosuch", up=True)
        assert missing.value.errno == errno.ENODEV
        with pytest.raises(NetworkError, match="invalid IPv4 address"):
            nl.add_address(1, "not-an-ip", 24)
        with pytest.raises(NetlinkError) as tiny:
            nl.set_link(lab.bridge, mtu=10)
        assert tiny.value.errno == errno.EINVAL


def test_netns_creation_failure_is_reported(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(NetworkError, match="cannot prepare"):
        kernel.create_netns(tmp_path / "file" / "c2")


def _table(cfg: NetConfig) -> str:
    return subprocess.run(
        ["nft", "list", "table", "ip", cfg.table], capture_output=True, text=True
    ).stdout


def test_firewall_rewrites_in_place_and_caches(tmp_path: Path) -> None:
    """Unchanged rules are not sent again; changed ones replace the old ones atomically."""
    cfg = NetConfig(
        suffix=os.urandom(4).hex(),
        default_bridge="",
        default_subnet=None,
        default_gateway=None,
        default_pools=[],
        user_pools=[],
        resolv_conf="",
        firewall="nftables",
    )
    cache = tmp_path / "ruleset.nft"
    bridges = [firewall.BridgeRules("dyt-fw0", "10.250.250.0/24", False)]
    first = [firewall.PortRule("tcp", "", 18081, "10.250.250.2", 80)]
    second = [firewall.PortRule("udp", "127.0.0.1", 18082, "10.250.250.3", 53)]
    try:
        firewall.apply(cfg, bridges, first, cache=cache)
        assert "tcp . 18081 : 10.250.250.2 . 80" in _table(cfg)
        assert cache.read_text() == firewall.nft_table(cfg.table, bridges, first)
        accept_state = cache.with_name("ruleset.nft.accept").read_text()
        assert accept_state in (firewall.OPEN, "accept\ndyt-fw0\n")
        cache.with_name("ruleset.nft.accept").write_text(accept_state + "x")
        firewall.apply(cfg, bridges, first, cache=cache)  # the accept chain is checked again
        assert cache.with_name("ruleset.nft.accept").read_text() == accept_state
        firewall.apply(cfg, bridges, second, cache=cache)  # in place: flushed and refilled
        table = _table(cfg)
        assert "18081" not in table and "127.0.0.1 . udp . 18082 : 10.250.250.3 . 53" in table
        assert table.count("masquerade") == 3  # the rules were replaced, not appended
        firewall.forget_cache(cache)
        assert not cache.exists()
        firewall.apply(cfg, bridges, second, cache=cache)  # unknown state: afresh
        assert _table(cfg).count("masquerade") == 3
    finally:
        firewall.apply(cfg, [], [], cache=cache)
    assert _table(cfg) == "" and cache.read_text() == ""
