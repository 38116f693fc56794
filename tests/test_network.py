"""Networks, port publishing and embedded DNS on the real kernel.

Most tests simulate containers: ``NetworkManager.prepare`` builds the namespace,
veths, addresses and rules exactly as for a container, and busybox runs inside the
namespace with nsenter. Traffic goes only to loopback, to addresses of bridges the
test created, and to an address the test puts on an interface of its own. Every test
removes what it made (``destroy_all`` plus checks) even when it fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec
from dockyard.db import Database
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.ids import new_id
from dockyard.network import options, proxy
from dockyard.network.manager import NetworkManager
from dockyard.network.options import parse_add_host, parse_publish
from dockyard.network.store import NetworkRecord

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


# -- fixtures ---------------------------------------------------------------------------


def _kernel_objects(mgr: NetworkManager) -> dict[str, Any]:
    """What of this store is visible in the kernel: links, nft table, netns files."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()}
    ours = {n.bridge for n in mgr.list() if n.bridge}
    ruleset = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
    netns_dir = mgr.paths.runroot / "netns"
    return {
        "bridges": ours & names,
        "table": f"table ip {mgr.cfg.table}" in ruleset.splitlines(),
        "netns": sorted(os.listdir(netns_dir)) if netns_dir.is_dir() else [],
        "names": names,
    }


@pytest.fixture
def resolv_file(tmp_path: Path) -> Path:
    """A host resolv.conf whose upstream is loopback (nothing leaves the machine)."""
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 127.0.0.1\nsearch example.test\noptions timeout:1\n")
    return path


@pytest.fixture
def mgr(
    tmp_path: Path, resolv_file: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[NetworkManager]:
    monkeypatch.setenv("DOCKYARD_RESOLV_CONF", str(resolv_file))
    monkeypatch.setenv("DOCKYARD_NET_REGISTRY", str(tmp_path / "netreg"))
    paths = Paths(tmp_path / "root", tmp_path / "run")
    paths.ensure()
    db = Database(paths.db)
    manager = NetworkManager(paths, db)
    try:
        yield manager
    finally:
        try:
            manager.destroy_all()
        finally:
            subprocess.run(["umount", "-l", str(paths.runroot / "netns")], capture_output=True)
            db.close()


@contextmanager
def container(mgr: NetworkManager, name: str, **spec: Any) -> Iterator[tuple[str, Any]]:
    """A simulated container: its networking as at start, torn down at the end."""
    cid = new_id()
    image_config = spec.pop("image_config", {})
    setup = mgr.prepare(cid, name, ContainerSpec(image="busybox", **spec), image_config)
    try:
        yield cid, setup
    finally:
        mgr.teardown(cid)


@contextmanager
def in_netns(netns: str, *argv: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        ["nsenter", f"--net={netns}", *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        yield proc
    finally:
        proc.kill()
        proc.wait()


def ns_run(netns: str | None, *argv: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    prefix = ["nsenter", f"--net={netns}"] if netns else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, timeout=timeout)


def fetch(url: str, netns: str | None = None) -> str:
    """GET a URL with Python (busybox wget crashes here), optionally from a namespace."""
    code = "import sys,urllib.request;sys.stdout.write(urllib.request.urlopen(sys.argv[1],timeout=5).read().decode())"
    proc = ns_run(netns, sys.executable, "-c", code, url)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_port(netns: str, port: int) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = ns_run(netns, "cat", "/proc/net/tcp", "/proc/net/tcp6").stdout
        if any(
            f":{port:04X} " in line and line.split()[3] == "0A" for line in out.splitlines()[1:]
        ):
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on port {port}")


@pytest.fixture
def dummy_address() -> Iterator[str]:
    """A non-loopback host address of our own, on a port-less bridge (no dummy module here)."""
    name, addr = f"dyt{os.getpid() % 100000}", "10.254.77.1"
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    try:
        subprocess.run(["ip", "addr", "add", f"{addr}/32", "dev", name], check=True)
        subprocess.run(["ip", "link", "set", name, "up"], check=True)
        yield addr
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


@pytest.fixture
def webroot(tmp_path: Path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("hello from the container\n")
    return root


# -- parsing --------------------------------------------------------------------------


def test_parse_publish() -> None:
    b = parse_publish("8080:80")[0]
    assert (b.host_ip, b.host_port, b.container_port, b.protocol) == ("", 8080, 80, "tcp")
    b = parse_publish("127.0.0.1:8080:80/udp")[0]
    assert (b.host_ip, b.host_port, b.container_port, b.protocol) == ("127.0.0.1", 8080, 80, "udp")
    b = parse_publish("127.0.0.1::80")[0]
    assert (b.host_ip, b.host_port) == ("127.0.0.1", 0)
    assert [(b.host_port, b.container_port) for b in parse_publish("8000-8002:9000-9002")] == [
        (8000, 9000),
        (8001, 9001),
        (8002, 9002),
    ]
    assert [b.host_port for b in parse_publish("7000-7001")] == [0, 0]
    for bad in ("", "8080:", "70000:80", "1-3:4-5", "a:80", "8080:80/sctp", "1.2.3.4.5:80:80"):
        with pytest.raises(InvalidArgument):
            parse_publish(bad)


def test_parse_add_host_and_mode() -> None:
    assert parse_add_host("db:10.0.0.5") == "db:10.0.0.5"
    assert parse_add_host("db=10.0.0.5") == "db:10.0.0.5"
    assert parse_add_host("gw:host-gateway") == "gw:host-gateway"
    assert parse_add_host("v6:::1") == "v6:::1"
    for bad in ("nohost", "h:notanip", ":1.2.3.4"):
        with pytest.raises(InvalidArgument):
            parse_add_host(bad)
    assert options.parse_network_mode("default") == "bridge"
    with pytest.raises(InvalidArgument):
        options.parse_network_mode("container:")
    with pytest.raises(InvalidArgument):
        options.validate_spec(ContainerSpec(image="x", network_mode="container:a", hostname="h"))
    with pytest.raises(InvalidArgument):
        options.validate_spec(ContainerSpec(image="x", network_aliases=["a"]))


def test_apply_network_args() -> None:
    import argparse

    args = argparse.Namespace(
        network="default",
        network_alias=[],
        ip=None,
        dns=["1.1.1.1"],
        dns_search=[],
        dns_option=[],
        add_host=["a=10.0.0.1"],
        publish=["8080:80", "9000-9001:9000-9001/udp"],
        publish_all=True,
    )
    spec = ContainerSpec(image="x")
    options.apply_network_args(spec, args)
    assert spec.network_mode == "bridge" and spec.extra_hosts == ["a:10.0.0.1"]
    assert [(b.host_port, b.protocol) for b in spec.ports] == [
        (8080, "tcp"),
        (9000, "udp"),
        (9001, "udp"),
    ]
    args.dns = ["not-an-ip"]
    with pytest.raises(InvalidArgument):
        options.apply_network_args(spec, args)


def test_resolv_rules() -> None:
    host = options.ResolvConf(["127.0.0.53", "10.1.1.1"], ["corp"], ["rotate"])
    spec = ContainerSpec(image="x")
    conf = options.resolv_for(host, spec, embedded_dns=None, host_mode=False, default_dns=[])
    assert conf.nameservers == ["10.1.1.1"] and conf.search == ["corp"]
    only_local = options.ResolvConf(["127.0.0.1"], [], [])
    conf = options.resolv_for(only_local, spec, embedded_dns=None, host_mode=False, default_dns=[])
    assert conf.nameservers == ["8.8.8.8", "8.8.4.4"]
    conf = options.resolv_for(host, spec, embedded_dns="10.9.0.1", host_mode=False, default_dns=[])
    assert conf.nameservers == ["10.9.0.1"] and "ndots:0" in conf.options
    spec = ContainerSpec(image="x", dns=["9.9.9.9"], dns_search=["."], dns_options=["ndots:2"])
    conf = options.resolv_for(host, spec, embedded_dns=None, host_mode=False, default_dns=[])
    assert (conf.nameservers, conf.search, conf.options) == (["9.9.9.9"], [], ["ndots:2"])


# -- networks ----------------------------------------------------------------------------


def test_create_list_inspect_remove(mgr: NetworkManager) -> None:
    assert {n.name for n in mgr.list()} == {"bridge", "host", "none"}
    net = mgr.create(
        "front", subnet="10.231.5.0/24", gateway="10.231.5.254", labels={"tier": "web"}
    )
    assert _kernel_objects(mgr)["bridges"] == {net.bridge}
    data = mgr.inspect("front")
    assert data["IPAM"]["Config"] == [{"Subnet": "10.231.5.0/24", "Gateway": "10.231.5.254"}]
    assert (data["Scope"], data["Driver"], data["Internal"], data["Labels"]) == (
        "local",
        "bridge",
        False,
        {"tier": "web"},
    )
    assert mgr.get(net.id[:6]).name == "front"
    with pytest.raises(Conflict):
        mgr.create("front")
    with pytest.raises(Conflict):
        mgr.create("other", subnet="10.231.0.0/16")  # overlaps front
    with pytest.raises(Conflict):
        mgr.remove("bridge")
    auto = mgr.create("auto", internal=True)
    assert auto.subnet and auto.subnet.startswith("10.22")
    mgr.remove("front")
    mgr.remove(auto.id)
    with pytest.raises(NotFound):
        mgr.get("front")
    objects = _kernel_objects(mgr)
    assert not objects["bridges"] and not objects["table"]


def test_cli_network_commands(dy: Any, dockyard_env: dict[str, str], resolv_file: Path) -> None:
    dockyard_env["DOCKYARD_RESOLV_CONF"] = str(resolv_file)
    paths = Paths(Path(dockyard_env["DOCKYARD_ROOT"]), Path(dockyard_env["DOCKYARD_RUNROOT"]))
    try:
        created = dy(
            "network", "create", "--subnet", "10.232.0.0/24", "--label", "a=b", "n1", check=True
        )
        net_id = created.stdout.strip()
        assert len(net_id) == 64
        dy("network", "create", "--internal", "n2", check=True)
        dup = dy("network", "create", "n1")
        assert dup.returncode == 1 and "already exists" in dup.stderr
        ls = dy("network", "ls", check=True).stdout.splitlines()
        assert ls[0].split() == ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]
        assert [line.split()[1] for line in ls[1:]] == ["bridge", "host", "n1", "n2", "none"]
        assert dy("network", "ls", "-q", "--filter", "label=a").stdout.split() == [net_id[:12]]
        assert (
            dy(
                "network", "ls", "--filter", "type=custom", "--format", "{{.Name}} {{.Internal}}"
            ).stdout
            == "n1 false\nn2 true\n"
        )
        doc = json.loads(dy("network", "inspect", "n1", check=True).stdout)
        assert doc[0]["Id"] == net_id and doc[0]["IPAM"]["Config"][0]["Subnet"] == "10.232.0.0/24"
        assert (
            dy("network", "inspect", "-f", "{{.Name}} {{.Driver}}", net_id[:10]).stdout
            == "n1 bridge\n"
        )
        missing = dy("network", "inspect", "nope")
        assert missing.returncode == 1 and "No such network: nope" in missing.stderr
        rm = dy("network", "rm", "n1", "nope")
        assert rm.returncode == 1 and rm.stdout == "n1\n"
        assert dy("network", "rm", "bridge").returncode == 1
        pruned = dy("network", "prune", "-f", check=True).stdout
        assert pruned == "Deleted Networks:\nn2\n\n"
        assert dy("network", "list", "-q").stdout.count("\n") == 3
    finally:
        db = Database(paths.db)
        try:
            NetworkManager(paths, db).destroy_all()
        finally:
            db.close()


# -- containers on networks -------------------------------------------------------------------


def test_bridge_container_setup_and_files(mgr: NetworkManager) -> None:
    spec: dict[str, Any] = {"hostname": "web1", "extra_hosts": ["db:10.1.2.3", "gw:host-gateway"]}
    with container(mgr, "web", **spec) as (cid, setup):
        settings = setup.settings
        ip, gw = settings["IPAddress"], settings["Gateway"]
        bridge = mgr.get("bridge")
        assert bridge.subnet and ip and gw == bridge.gateway
        assert settings["Networks"]["bridge"]["MacAddress"] == settings["MacAddress"]
        assert setup.hostname == "web1" and setup.netns_path
        out = ns_run(setup.netns_path, "ip", "-o", "-4", "addr").stdout
        assert f"inet {ip}/" in out and " lo " in out
        route = ns_run(setup.netns_path, "ip", "route").stdout
        assert f"default via {gw} dev eth0" in route
        files = {m["destination"]: Path(m["source"]).read_text() for m in setup.extra_mounts}
        assert files["/etc/hostname"] == "web1\n"
        assert f"{ip}\tweb1\n" in files["/etc/hosts"] and "10.1.2.3\tdb\n" in files["/etc/hosts"]
        assert f"{gw}\tgw\n" in files["/etc/hosts"]
        # loopback host nameservers are dropped for the default bridge (Docker's rule)
        assert "nameserver 8.8.8.8" in files["/etc/resolv.conf"]
        assert "search example.test" in files["/etc/resolv.conf"]
        assert bridge.bridge in _kernel_objects(mgr)["bridges"]
    # the default bridge stays, as docker0 does; the container's namespace is gone
    assert _kernel_objects(mgr)["netns"] == []
    mgr.destroy_all()
    objects = _kernel_objects(mgr)
    assert not objects["bridges"] and not objects["table"]


def test_host_none_and_container_modes(mgr: NetworkManager) -> None:
    with container(mgr, "h", network_mode="host") as (_, host):
        assert host.netns_path is None and host.hostname == socket.gethostname()
        assert list(host.settings["Networks"]) == ["host"]
    with container(mgr, "n", network_mode="none") as (cid, none):
        assert none.netns_path and list(none.settings["Networks"]) == ["none"]
        links = ns_run(none.netns_path, "ip", "-o", "link").stdout
        assert "lo" in links and "eth0" not in links
        with container(mgr, "joined", network_mode=f"container:{cid[:8]}") as (_, joined):
            assert joined.netns_path == none.netns_path
            assert joined.extra_mounts[0]["source"].startswith(str(mgr.paths.container_dir(cid)))
    with pytest.raises(NotFound):
        with container(mgr, "late", network_mode="container:nosuch"):
            pass


def test_concurrent_allocation(mgr: NetworkManager, tmp_path: Path) -> None:
    """Parallel starts in separate processes never get the same address."""
    mgr.create("busy", subnet="10.233.0.0/28")  # 13 usable addresses
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "from dockyard.config import Paths\nfrom dockyard.db import Database\n"
        "from dockyard.network.manager import NetworkManager\n"
        "from dockyard.containers.spec import ContainerSpec\n"
        "p = Paths(Path(sys.argv[1]), Path(sys.argv[2]))\n"
        "m = NetworkManager(p, Database(p.db))\n"
        "s = m.prepare(sys.argv[3], sys.argv[3][:8], ContainerSpec(image='x', network_mode='busy'), {})\n"
        "print(s.settings['Networks']['busy']['IPAddress'])\n"
    )
    ids = [new_id() for _ in range(8)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    try:
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", script, str(mgr.paths.root), str(mgr.paths.runroot), cid],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )
            for cid in ids
        ]
        results = [p.communicate(timeout=120) for p in procs]
        assert all(p.returncode == 0 for p in procs), [r[1] for r in results]
        ips = [r[0].strip() for r in results]
        assert len(set(ips)) == 8 and all(ip.startswith("10.233.0.") for ip in ips)
        assert "10.233.0.1" not in ips  # the gateway
        data = mgr.inspect("busy")
        assert sorted(c["IPv4Address"] for c in data["Containers"].values()) == sorted(
            f"{ip}/28" for ip in ips
        )
    finally:
        for cid in ids:
            mgr.teardown(cid)
    assert mgr.inspect("busy")["Containers"] == {}
    with container(mgr, "again", network_mode="busy") as (
        _,
        setup,
    ):  # released addresses are reused
        assert setup.settings["Networks"]["busy"]["IPAddress"] == "10.233.0.2"


def test_published_port(mgr: NetworkManager, webroot: Path, dummy_address: str) -> None:
    port = _free_port()
    v6 = proxy.host_has_ipv6()  # then [::]:PORT too, through dockyard-proxy, as Docker's
    with container(mgr, "web", ports=parse_publish(f"{port}:80")) as (cid, web):
        assert mgr.port_lines(cid) == [f"80/tcp -> 0.0.0.0:{port}"] + v6 * [f"80/tcp -> :::{port}"]
        assert mgr.port_lines(cid, "80/tcp") == [f"0.0.0.0:{port}"] + v6 * [f":::{port}"]
        assert web.settings["Ports"] == {
            "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(port)}]
            + v6 * [{"HostIp": "::", "HostPort": str(port)}]
        }
        with in_netns(web.netns_path, BUSYBOX, "httpd", "-f", "-p", "80", "-h", str(webroot)):
            wait_port(web.netns_path, 80)
            expected = "hello from the container\n"
            assert fetch(f"http://127.0.0.1:{port}/") == expected
            if v6:
                assert fetch(f"http://[::1]:{port}/") == expected
            assert fetch(f"http://{dummy_address}:{port}/") == expected
            assert fetch(f"http://{web.settings['IPAddress']}/") == expected
            with container(mgr, "client") as (_, client):
                # another container through the host address, and the container to itself
                assert fetch(f"http://{dummy_address}:{port}/", client.netns_path) == expected
                assert fetch(f"http://{dummy_address}:{port}/", web.netns_path) == expected
    assert _kernel_objects(mgr)["netns"] == []
    assert not list(mgr.state_dir.glob("proxy-*"))  # the proxies ended with the container
    with container(mgr, "v4", ports=parse_publish(f"0.0.0.0:{port}:80")) as (cid, _):
        assert mgr.port_lines(cid) == [f"80/tcp -> 0.0.0.0:{port}"]  # IPv4 asked for: no [::]
    with socket.socket(socket.AF_INET6) as probe:  # and [::]:PORT is free again
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no owner
        probe.bind(("::", port))
    mgr.destroy_all()  # the default bridge stays until then, as docker0 does
    objects = _kernel_objects(mgr)
    assert not objects["bridges"] and not objects["table"]


def test_publish_localhost_only_udp_and_publish_all(mgr: NetworkManager) -> None:
    tport, uport = _free_port(), _free_port(socket.SOCK_DGRAM)
    image_config = {"ExposedPorts": {"5000/tcp": {}, "53/udp": {}}}
    bindings = parse_publish(f"127.0.0.1:{tport}:7000") + parse_publish(f"{uport}:53/udp")
    with container(mgr, "u", ports=bindings, publish_all=True, image_config=image_config) as (
        cid,
        c,
    ):
        lines = mgr.port_lines(cid)
        assert f"7000/tcp -> 127.0.0.1:{tport}" in lines and f"53/udp -> 0.0.0.0:{uport}" in lines
        auto = mgr.port_lines(cid, "5000")
        low, high = (
            int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        )
        assert len(auto) == 1 + proxy.host_has_ipv6()  # -P binds every address, [::] too
        assert low <= int(auto[0].split(":")[1]) <= high
        echo = "import socket;s=socket.socket(2,2);s.bind(('0.0.0.0',53));d,a=s.recvfrom(99);s.sendto(d.upper(),a)"
        with in_netns(c.netns_path, sys.executable, "-c", echo):
            deadline = time.monotonic() + 5
            while ":0035 " not in ns_run(c.netns_path, "cat", "/proc/net/udp").stdout:
                assert time.monotonic() < deadline, "the UDP echo server did not start"
                time.sleep(0.05)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(5)
                s.sendto(b"ping", ("127.0.0.1", uport))
                assert s.recvfrom(99)[0] == b"PING"
        with in_netns(c.netns_path, BUSYBOX, "nc", "-l", "-p", "7000", "-e", "echo", "tcp-ok"):
            wait_port(c.netns_path, 7000)
            with socket.create_connection(("127.0.0.1", tport), timeout=5) as s:
                assert s.recv(100) == b"tcp-ok\n"


def test_port_conflicts(mgr: NetworkManager) -> None:
    port = _free_port()
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", port))
        busy.listen()
        with pytest.raises(Conflict, match="address already in use") as err:
            with container(mgr, "a", ports=parse_publish(f"{port}:80")):
                pass
        assert err.value.exit_code == 125
    if proxy.host_has_ipv6():  # taken on IPv6 only: Docker's tcp6 message, nothing kept
        with socket.socket(socket.AF_INET6) as busy6:
            busy6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            busy6.bind(("::", port))
            busy6.listen()
            with pytest.raises(Conflict, match=rf"listen tcp6 \[::\]:{port}: bind: address"):
                with container(mgr, "a", ports=parse_publish(f"{port}:80")):
                    pass
        assert mgr.db.query("SELECT COUNT(*) FROM net_ports")[0][0] == 0
    with container(mgr, "a", ports=parse_publish(f"{port}:80")):
        with pytest.raises(Conflict, match="port is already allocated"):
            with container(mgr, "b", ports=parse_publish(f"127.0.0.1:{port}:81")):
                pass
    assert _kernel_objects(mgr)["netns"] == []
    assert mgr.db.query("SELECT COUNT(*) FROM net_ports")[0][0] == 0


def test_cleanup_stale_and_nothing_left(mgr: NetworkManager) -> None:
    net = mgr.create("stale")
    cids = []
    for name, mode in (("s1", "stale"), ("s2", "bridge")):
        cid = new_id()
        mgr.prepare(
            cid,
            name,
            ContainerSpec(image="x", network_mode=mode, ports=parse_publish(f"{_free_port()}:80")),
            {},
        )
        cids.append(cid)
    assert _dns_running(mgr, net)
    assert sorted(mgr.cleanup_stale(lambda cid: False)) == sorted(cids)
    assert mgr.cleanup_stale(lambda cid: False) == []
    assert not _dns_running(mgr, net)
    mgr.remove("stale")
    assert _kernel_objects(mgr)["netns"] == []
    mgr.destroy_all()  # the default bridge stays until then, as docker0 does
    objects = _kernel_objects(mgr)
    assert not objects["bridges"] and not objects["table"]
    assert not any(n.startswith("dy") and n in objects["names"] for n in _veths(mgr, cids))
    nft = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True).stdout
    assert mgr.cfg.table not in nft


def test_sweep_orphans_of_deleted_store(mgr: NetworkManager, tmp_path: Path) -> None:
    """A store deleted without cleanup: the next sweep removes what it left in the kernel."""
    from dockyard.network import gc

    other = Paths(tmp_path / "other" / "root", tmp_path / "other" / "run")
    other.ensure()
    db = Database(other.db)
    try:
        lost = NetworkManager(other, db)
        net = lost.create("lostnet")
        cid = new_id()
        setup = lost.prepare(cid, "c", ContainerSpec(image="x", network_mode="lostnet"), {})
        assert setup.netns_path and _dns_running(lost, net)
        assert gc.sweep_orphans() == []  # its database still exists
        db.close()
        other.db.unlink()
        assert gc.sweep_orphans() == [str(other.root)]
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        assert lost.cfg.table not in tables.split() and not os.path.exists(
            f"/sys/class/net/{net.bridge}"
        )
        assert not os.path.ismount(setup.netns_path)
        deadline = time.monotonic() + 5
        while _dns_running(lost, net) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _dns_running(lost, net)
    finally:
        db.close()
        subprocess.run(["umount", "-l", str(other.runroot / "netns")], capture_output=True)


def test_cli_port_command(dy: Any, dockyard_env: dict[str, str], resolv_file: Path) -> None:
    dockyard_env["DOCKYARD_RESOLV_CONF"] = str(resolv_file)
    paths = Paths(Path(dockyard_env["DOCKYARD_ROOT"]), Path(dockyard_env["DOCKYARD_RUNROOT"]))
    paths.ensure()
    db = Database(paths.db)
    os.environ["DOCKYARD_RESOLV_CONF"] = str(resolv_file)
    try:
        m = NetworkManager(paths, db)
        port = _free_port()
        cid = new_id()
        m.prepare(cid, "pweb", ContainerSpec(image="x", ports=parse_publish(f"{port}:80")), {})
        v6 = proxy.host_has_ipv6()
        out = dy("port", "pweb", check=True).stdout
        assert out == f"80/tcp -> 0.0.0.0:{port}\n" + v6 * f"80/tcp -> :::{port}\n"
        assert dy("port", cid[:10], "80").stdout == f"0.0.0.0:{port}\n" + v6 * f":::{port}\n"
        missing = dy("port", "pweb", "81/udp")
        assert (
            missing.returncode == 1
            and "No public port '81/udp' published for pweb" in missing.stderr
        )
    finally:
        os.environ.pop("DOCKYARD_RESOLV_CONF", None)
        try:
            NetworkManager(paths, db).destroy_all()
        finally:
            subprocess.run(["umount", "-l", str(paths.runroot / "netns")], capture_output=True)
            db.close()


# -- helpers ----------------------------------------------------------------------------------------


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def _dns_running(mgr: NetworkManager, net: NetworkRecord) -> bool:
    """Whether the store's DNS server runs and serves ``net`` (listens on its gateway)."""
    from dockyard.network import dnsctl

    assert net.gateway
    return dnsctl.running(mgr.dns_pidfile, mgr.paths.db) and dnsctl.listening(net.gateway)


def _veths(mgr: NetworkManager, cids: list[str]) -> list[str]:
    return [mgr.cfg.veth_name(cid, net.id) for cid in cids for net in mgr.list()]
