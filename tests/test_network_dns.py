# ruff: noqa: F811 - the fixtures imported from test_network are parameters here
"""Embedded DNS, live connect/disconnect, and the whole path through real containers.

Shares the fixtures and helpers of test_network.py (simulated containers made by
NetworkManager.prepare; traffic only to loopback and to bridges the tests create).
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_network import (  # noqa: F401 - fixtures are used by name
    BUSYBOX,
    _dns_running,
    _free_port,
    container,
    mgr,
    ns_run,
    resolv_file,
    webroot,
)

from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec
from dockyard.db import Database
from dockyard.errors import Conflict, NotFound
from dockyard.network import proxy
from dockyard.network.manager import NetworkManager


def test_dns_on_user_network(mgr: NetworkManager) -> None:
    net = mgr.create("app")
    assert net.gateway
    with container(mgr, "db", network_mode="app", network_aliases=["database"]) as (db_id, db):
        db_ip = db.settings["Networks"]["app"]["IPAddress"]
        files = {m["destination"]: Path(m["source"]).read_text() for m in db.extra_mounts}
        assert files["/etc/resolv.conf"].startswith(f"nameserver {net.gateway}\n")
        with container(mgr, "client", network_mode="app") as (_, client):
            for name in ("db", "database", db_id[:12], "DB.app"):
                assert _lookup(client.netns_path, name, net.gateway) == [db_ip], name
            # renamed: the server reads names from the database
            with mgr.db.transaction() as conn:
                conn.execute(
                    "UPDATE net_containers SET name = 'primary' WHERE container_id = ?", (db_id,)
                )
            assert _lookup(client.netns_path, "primary", net.gateway) == [db_ip]
            assert _lookup(client.netns_path, "db", net.gateway) == []
            reverse = ns_run(client.netns_path, BUSYBOX, "nslookup", db_ip, net.gateway).stdout
            assert "primary.app" in reverse
        # client is gone: no answer for it
        assert _lookup(db.netns_path, "client", net.gateway) == []
        # over TCP too, straight from the host
        reply = _tcp_query(net.gateway, "database")
        assert socket.inet_aton(db_ip) in reply and reply[3] & 0x0F == 0
    assert not _dns_running(mgr, net)


def test_dns_follows_churn(mgr: NetworkManager) -> None:
    net = mgr.create("churn", subnet="10.235.0.0/24")
    assert net.gateway
    with container(mgr, "watcher", network_mode="churn") as (_, watcher):
        for i in range(4):
            with container(mgr, f"worker{i}", network_mode="churn", network_aliases=["worker"]) as (
                _,
                w,
            ):
                ip = w.settings["Networks"]["churn"]["IPAddress"]
                assert _lookup(watcher.netns_path, f"worker{i}", net.gateway) == [ip]
                assert _lookup(watcher.netns_path, "worker", net.gateway) == [ip]
            assert _lookup(watcher.netns_path, f"worker{i}", net.gateway) == []
            assert _lookup(watcher.netns_path, "worker", net.gateway) == []


def test_dns_forwards_to_upstream(mgr: NetworkManager, resolv_file: Path) -> None:
    upstream = "127.0.0.77"
    answers = _fake_upstream(upstream)
    if answers is None:
        pytest.skip("cannot bind a fake upstream DNS server on 127.0.0.77:53")
    try:
        resolv_file.write_text(f"nameserver {upstream}\n")
        net = mgr.create("fwd")
        assert net.gateway
        with container(mgr, "c", network_mode="fwd") as (_, c):
            assert _lookup(c.netns_path, "outside.test", net.gateway) == ["192.0.2.123"]
    finally:
        answers.close()


def test_connect_disconnect_running(mgr: NetworkManager) -> None:
    mgr.create("back", subnet="10.234.0.0/24")
    with container(mgr, "svc") as (cid, svc):
        spec = ContainerSpec(image="busybox")
        mgr.connect("back", cid, name="svc", spec=spec, aliases=["api"])
        addrs = ns_run(svc.netns_path, "ip", "-o", "-4", "addr").stdout
        assert "eth1" in addrs and "10.234.0.2/24" in addrs
        settings = mgr.settings(cid, spec)
        assert set(settings["Networks"]) == {"bridge", "back"}
        assert settings["Networks"]["back"]["Aliases"] == ["api", cid[:12]]
        with pytest.raises(Conflict):
            mgr.connect("back", cid, name="svc", spec=spec)
        with container(mgr, "peer", network_mode="back") as (_, peer):
            assert _lookup(peer.netns_path, "api", "10.234.0.1") == ["10.234.0.2"]
            mgr.disconnect("back", cid)
            assert "eth1" not in ns_run(svc.netns_path, "ip", "-o", "link").stdout
            assert _lookup(peer.netns_path, "api", "10.234.0.1") == []
        with pytest.raises(NotFound):
            mgr.disconnect("back", cid)
        mgr.disconnect("back", cid, force=True)
        with pytest.raises(Conflict):
            mgr.remove("bridge")


def test_remove_network_in_use_and_internal(mgr: NetworkManager) -> None:
    mgr.create("private", internal=True)
    with container(mgr, "c", network_mode="private") as (_, c):
        with pytest.raises(Conflict, match="active endpoints"):
            mgr.remove("private")
        assert "default" not in ns_run(c.netns_path, "ip", "route").stdout
    mgr.remove("private")


# -- real containers (once the engine runs them) ----------------------------------------------------


@pytest.fixture
def engine(
    dy: Any, busybox_tar: Path, dockyard_env: dict[str, str], resolv_file: Path
) -> Iterator[Any]:
    """The CLI, once it can import an image and run a networked container; else skip."""
    dockyard_env["DOCKYARD_RESOLV_CONF"] = str(resolv_file)
    paths = Paths(Path(dockyard_env["DOCKYARD_ROOT"]), Path(dockyard_env["DOCKYARD_RUNROOT"]))
    busybox_image = "busybox:latest"
    try:
        imported = dy("import", str(busybox_tar), busybox_image)
        if imported.returncode != 0:
            pytest.skip(f"the engine cannot import images yet: {imported.stderr.strip()[-200:]}")
        probe = dy("run", "--rm", busybox_image, "true")
        if probe.returncode != 0:
            pytest.skip(f"the engine cannot run containers yet: {probe.stderr.strip()[:200]}")
        if not dy("run", "--rm", busybox_image, "test", "-f", "/etc/resolv.conf").returncode == 0:
            pytest.skip("the engine does not wire networking yet")
        yield dy
    finally:
        for cid in dy("ps", "-aq", "--no-trunc").stdout.split():
            dy("rm", "-f", cid)
        paths.ensure()
        db = Database(paths.db)
        try:
            NetworkManager(paths, db).destroy_all()
        finally:
            db.close()


def test_engine_published_port_and_dns(engine: Any, webroot: Path) -> None:
    dy = engine
    port = _free_port()
    dy("network", "create", "enet", check=True)
    dy(
        "run",
        "-d",
        "--name",
        "www",
        "--network",
        "enet",
        "--network-alias",
        "site",
        "-p",
        f"{port}:80",
        "-v",
        f"{webroot}:/www",
        "busybox:latest",
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
        check=True,
    )
    deadline = time.monotonic() + 10
    body = ""
    while time.monotonic() < deadline:
        try:
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read().decode()
            break
        except OSError:
            time.sleep(0.2)
    assert body == "hello from the container\n"
    v6 = f"80/tcp -> :::{port}\n" if proxy.host_has_ipv6() else ""
    assert dy("port", "www", check=True).stdout == f"80/tcp -> 0.0.0.0:{port}\n" + v6
    out = dy(
        "run",
        "--rm",
        "--network",
        "enet",
        "--dns-search",
        ".",
        "busybox:latest",
        "nslookup",
        "site",
        check=True,
    ).stdout
    assert "Address" in out and "10.22" in out
    ip = dy(
        "inspect", "-f", "{{.NetworkSettings.Networks.enet.IPAddress}}", "www", check=True
    ).stdout.strip()
    doc = json.loads(dy("network", "inspect", "enet", check=True).stdout)[0]
    assert [c["IPv4Address"].split("/")[0] for c in doc["Containers"].values()] == [ip]

    def lookup(name: str) -> str:
        proc = dy(
            "run",
            "--rm",
            "--network",
            "enet",
            "--dns-search",
            ".",
            "busybox:latest",
            "nslookup",
            name,
        )
        return proc.stdout if proc.returncode == 0 else ""

    dy("rename", "www", "web2", check=True)
    assert ip in lookup("web2") and ip not in lookup("www")
    assert dy("network", "rm", "enet").returncode == 1  # in use
    dy("rm", "-f", "web2", check=True)
    assert ip not in lookup("site")
    dy("network", "rm", "enet", check=True)


def _lookup(netns: str | None, name: str, server: str) -> list[str]:
    assert netns
    proc = ns_run(netns, BUSYBOX, "nslookup", "-type=a", name, server)
    if proc.returncode != 0:
        return []
    lines = proc.stdout.split("Name:", 1)[1:] or [""]
    return [line.split()[-1] for line in lines[0].splitlines() if line.startswith("Address")]


def _tcp_query(server: str, name: str) -> bytes:
    """A raw A query over TCP; the reply message."""

    from dockyard.network.dns import encode_name

    query = (
        struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + struct.pack("!HH", 1, 1)
    )
    with socket.create_connection((server, 53), timeout=5) as s:
        s.sendall(struct.pack("!H", len(query)) + query)
        size = struct.unpack("!H", s.recv(2))[0]
        data = b""
        while len(data) < size:
            data += s.recv(size - len(data))
    assert data[:2] == b"\x12\x34"
    return data


class _Upstream:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        from dockyard.network.dns import NOERROR, A, build_reply

        while True:
            try:
                query, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            self.sock.sendto(
                build_reply(query, NOERROR, [(A, socket.inet_aton("192.0.2.123"))]), peer
            )

    def close(self) -> None:
        self.sock.close()


def _fake_upstream(address: str) -> _Upstream | None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((address, 53))
    except OSError:
        sock.close()
        return None
    return _Upstream(sock)


def test_one_dns_server_serves_every_network(mgr: NetworkManager) -> None:
    """One process per store, listening on the gateway of each network in use."""
    from dockyard.network import dnsctl

    first = mgr.create("first", subnet="10.236.0.0/24")
    second = mgr.create("second", subnet="10.237.0.0/24")
    with container(mgr, "a", network_mode="first") as (_, a):
        pid = int(mgr.dns_pidfile.read_text())
        with container(mgr, "b", network_mode="second") as (_, b):
            assert int(mgr.dns_pidfile.read_text()) == pid  # the same server
            a_ip = a.settings["Networks"]["first"]["IPAddress"]
            b_ip = b.settings["Networks"]["second"]["IPAddress"]
            assert _lookup(a.netns_path, "a", "10.236.0.1") == [a_ip]
            assert _lookup(b.netns_path, "b", "10.237.0.1") == [b_ip]
            assert _lookup(b.netns_path, "a", "10.237.0.1") == []  # other network's names
        assert not _dns_running(mgr, second) and _dns_running(mgr, first)
        assert _lookup(a.netns_path, "a", "10.236.0.1") == [a_ip]
    deadline = time.monotonic() + 5  # no network needs it: it exits
    while dnsctl.running(mgr.dns_pidfile, mgr.paths.db) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not dnsctl.running(mgr.dns_pidfile, mgr.paths.db)
