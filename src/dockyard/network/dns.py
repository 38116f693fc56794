"""The embedded DNS server of the user-defined networks (``python -m dockyard.network.dns``).

One small process per store listens on the gateway address, port 53 (UDP and TCP),
of every user-defined network with running containers, and answers A and PTR
queries for the containers attached to the network the query arrived on -- by
name, ``name.network``, network alias and short ID -- reading the endpoints
straight from the state database (re-read when SQLite's ``data_version`` says
another process committed), so it follows containers as they start, stop,
connect, disconnect or get renamed. Other names go to the querying container's
``--dns`` servers, else to the host's resolvers (loopback ones included: this
process runs in the host's namespace). Internal networks do not forward.

Lifetime: started when a container of a user-defined network starts and none
runs; SIGHUP makes it re-read the store and open or close its listeners at
once (``dnsctl`` sends it when a network gains or loses its last container);
it exits when no network needs it. One process for all networks: each one of
its own cost some 14 MB (PSS).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import selectors
import signal
import socket
import sqlite3
import struct
import sys
import threading
import time
from pathlib import Path
from typing import Any

from dockyard.records import field, record

TTL = 600
A, PTR, AAAA = 1, 12, 28
NOERROR, SERVFAIL, NXDOMAIN = 0, 2, 3


# -- wire format ------------------------------------------------------------------


def parse_query(msg: bytes) -> tuple[int, int, str, int, int] | None:
    """(id, flags, qname, qtype, end of question) of a standard query, else None."""
    if len(msg) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", msg[:6])
    if flags & 0x8000 or qdcount < 1:
        return None
    labels, pos = [], 12
    while True:
        if pos >= len(msg):
            return None
        length = msg[pos]
        pos += 1
        if length == 0:
            break
        if length & 0xC0:
            return None
        labels.append(msg[pos : pos + length].decode("ascii", "replace"))
        pos += length
    if pos + 4 > len(msg):
        return None
    qtype, _qclass = struct.unpack("!HH", msg[pos : pos + 4])
    return qid, flags, ".".join(labels), qtype, pos + 4


def encode_name(name: str) -> bytes:
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()[:63]
        out += bytes([len(raw)]) + raw
    return out + b"\0"


def build_reply(query: bytes, rcode: int, answers: list[tuple[int, bytes]]) -> bytes:
    parsed = parse_query(query)
    assert parsed is not None
    qid, flags, _name, _qtype, end = parsed
    rflags = 0x8000 | (flags & 0x7900) | 0x0480 | rcode  # QR, opcode+RD, AA+RA
    header = struct.pack("!HHHHHH", qid, rflags, 1, len(answers), 0, 0)
    body = b""
    for rtype, rdata in answers:
        body += struct.pack("!HHHIH", 0xC00C, rtype, 1, TTL, len(rdata)) + rdata
    return header + query[12:end] + body


def servfail(query: bytes) -> bytes:
    return build_reply(query, SERVFAIL, [])


# -- records from the state database -----------------------------------------------


@record
class NetworkView:
    """What the server knows of one network: its names and reverse names."""

    id: str
    name: str
    internal: bool
    names: dict[str, list[str]] = field(default_factory=dict)
    reverse: dict[str, str] = field(default_factory=dict)


class Records:
    """Names of the running containers of every user-defined network, by gateway address,
    reloaded when the database changes."""

    def __init__(self, db_path: str) -> None:
        self.conn = sqlite3.connect(db_path, timeout=30, check_same_thread=False)
        self.lock = threading.Lock()
        self.version = -1
        self.by_address: dict[str, NetworkView] = {}
        self.upstream_by_ip: dict[str, list[str]] = {}

    def refresh(self, force: bool = False) -> None:
        with self.lock:
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self.version and not force:
                return
            self.version = version
            self._load()

    def _load(self) -> None:
        current = {
            r[0]: r[1] for r in self.conn.execute("SELECT container_id, name FROM net_containers")
        }
        dns = {
            r[0]: json.loads(r[1])
            for r in self.conn.execute("SELECT container_id, dns FROM net_containers")
        }
        try:
            current.update(self.conn.execute("SELECT id, name FROM containers").fetchall())
        except sqlite3.OperationalError:
            pass
        views: dict[str, NetworkView] = {}
        upstream: dict[str, list[str]] = {}
        networks = self.conn.execute(
            "SELECT id, name, internal, gateway FROM networks "
            "WHERE builtin = 0 AND driver = 'bridge' AND gateway IS NOT NULL"
        ).fetchall()
        for net_id, net_name, internal, gateway in networks:
            rows = self.conn.execute(
                "SELECT container_id, ip, aliases FROM net_endpoints "
                "WHERE network_id = ? AND ip IS NOT NULL ORDER BY seq",
                (net_id,),
            ).fetchall()
            if not rows:
                continue  # no running container: nothing to serve there
            view = NetworkView(net_id, net_name.lower(), bool(internal))
            for cid, ip, aliases in rows:
                name = str(current.get(cid, cid[:12])).lstrip("/").lower()
                for key in [name, f"{name}.{view.name}", cid[:12], *json.loads(aliases)]:
                    view.names.setdefault(key.lower().rstrip("."), []).append(ip)
                view.reverse[ip] = f"{name}.{view.name}"
                if dns.get(cid):
                    upstream[ip] = dns[cid]
            views[gateway] = view
        self.by_address, self.upstream_by_ip = views, upstream

    def answer(
        self, address: str, name: str, qtype: int
    ) -> tuple[int, list[tuple[int, bytes]]] | None:
        """(rcode, answers) for a name the network on ``address`` owns, None to forward."""
        self.refresh()
        view = self.by_address.get(address)
        if view is None:
            return None
        key = name.lower().rstrip(".")
        if qtype == PTR and key.endswith(".in-addr.arpa"):
            octets = key[: -len(".in-addr.arpa")].split(".")
            target = view.reverse.get(".".join(reversed(octets)))
            return (NOERROR, [(PTR, encode_name(target))]) if target else None
        ips = view.names.get(key)
        if not ips:
            return None
        if qtype != A:
            return NOERROR, []  # known name, no record of that type (IPv4 only)
        return NOERROR, [(A, socket.inet_aton(ip)) for ip in ips]

    def internal(self, address: str) -> bool:
        view = self.by_address.get(address)
        return view is not None and view.internal


# -- forwarding -------------------------------------------------------------------


class Upstreams:
    """The host's resolvers from its resolv.conf, re-read when the file changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.mtime = -1.0
        self.servers: list[str] = []

    def get(self) -> list[str]:
        try:
            mtime = os.stat(self.path).st_mtime
        except OSError:
            return self.servers
        if mtime != self.mtime:
            self.mtime = mtime
            servers = []
            for line in Path(self.path).read_text().splitlines():
                words = line.split()
                if len(words) >= 2 and words[0] == "nameserver":
                    servers.append(words[1])
            self.servers = servers
        return self.servers


def forward_udp(query: bytes, servers: list[str], own: str) -> bytes | None:
    for server in servers[:3]:
        if server == own:
            continue
        try:
            family = socket.AF_INET6 if ":" in server else socket.AF_INET
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.settimeout(2.0)
                s.connect((server, 53))  # connected: a refusal (ICMP) ends the wait at once
                s.send(query)
                reply = s.recv(65535)
                if reply[:2] == query[:2]:
                    return reply
        except OSError:
            continue
    return None


def forward_tcp(query: bytes, servers: list[str], own: str) -> bytes | None:
    for server in servers[:3]:
        if server == own:
            continue
        try:
            with socket.create_connection((server, 53), timeout=3.0) as s:
                s.sendall(struct.pack("!H", len(query)) + query)
                size = struct.unpack("!H", _recv_exact(s, 2))[0]
                return _recv_exact(s, size)
        except (OSError, struct.error):
            continue
    return None


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise OSError("connection closed")
        data += chunk
    return data


# -- the server ---------------------------------------------------------------------


class Listener:
    """The UDP and TCP sockets on one gateway address, port 53."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            self.udp.bind((address, 53))
            self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.tcp.bind((address, 53))
            self.tcp.listen(64)
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        self.udp.close()
        self.tcp.close()


class Server:
    def __init__(self, records: Records, upstreams: Upstreams) -> None:
        self.records = records
        self.upstreams = upstreams
        self.listeners: dict[str, Listener] = {}
        self.selector = selectors.DefaultSelector()
        self.wake_read, wake_write = os.pipe()
        os.set_blocking(wake_write, False)
        signal.set_wakeup_fd(wake_write)  # SIGHUP ends the wait at once
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)

    def update(self, force: bool = False) -> None:
        """Listen on the gateways of the networks with running containers, and only there."""
        self.records.refresh(force)
        wanted = set(self.records.by_address)
        for address in list(self.listeners):
            if address not in wanted:
                listener = self.listeners.pop(address)
                self.selector.unregister(listener.udp)
                self.selector.unregister(listener.tcp)
                listener.close()
        for address in wanted - set(self.listeners):
            try:
                listener = Listener(address)
            except OSError:
                continue  # the bridge is not up yet: tried again at the next update
            self.listeners[address] = listener
            self.selector.register(listener.udp, selectors.EVENT_READ, (listener, "udp"))
            self.selector.register(listener.tcp, selectors.EVENT_READ, (listener, "tcp"))

    def local(self, address: str, query: bytes) -> bytes | None:
        """A reply from our records, SERVFAIL when we cannot forward, None to forward."""
        parsed = parse_query(query)
        if parsed is None:
            return None
        try:
            local = self.records.answer(address, parsed[2], parsed[3])
        except sqlite3.Error:
            return servfail(query)
        if local is not None:
            return build_reply(query, *local)
        return servfail(query) if self.records.internal(address) else None

    def forward(self, address: str, query: bytes, client: str, tcp: bool) -> bytes:
        servers = self.records.upstream_by_ip.get(client) or self.upstreams.get()
        reply = (forward_tcp if tcp else forward_udp)(query, servers, address)
        return reply if reply is not None else servfail(query)

    def _send_udp(self, sock: socket.socket, reply: bytes, query: bytes, peer: Any) -> None:
        if len(reply) > 512 and not _has_edns(query):
            parsed = parse_query(query)
            end = parsed[4] if parsed else 12
            flags = struct.unpack("!H", reply[2:4])[0] | 0x0200  # TC: retry over TCP
            reply = reply[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + query[12:end]
        try:
            sock.sendto(reply, peer)
        except OSError:
            pass

    def _udp_forward_job(self, listener: Listener, query: bytes, peer: Any) -> None:
        reply = self.forward(listener.address, query, peer[0], tcp=False)
        self._send_udp(listener.udp, reply, query, peer)

    def _tcp_job(self, address: str, conn: socket.socket, peer: Any) -> None:
        with conn:
            conn.settimeout(10.0)
            try:
                while True:
                    size = struct.unpack("!H", _recv_exact(conn, 2))[0]
                    query = _recv_exact(conn, size)
                    if parse_query(query) is None:
                        return
                    reply = self.local(address, query) or self.forward(
                        address, query, peer[0], tcp=True
                    )
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, struct.error):
                return

    def serve(self, alive_check: float = 2.0) -> None:
        last = time.monotonic()
        while self.listeners:
            for key, _ in self.selector.select(timeout=alive_check):
                if key.data is None:  # a signal: SIGHUP asks for an update now
                    try:
                        os.read(self.wake_read, 64)
                    except BlockingIOError:
                        pass
                    self._update_quietly(force=True)
                    continue
                listener, kind = key.data
                if kind == "udp":
                    try:
                        query, peer = listener.udp.recvfrom(65535)
                    except OSError:
                        continue
                    if parse_query(query) is None:
                        continue
                    reply = self.local(listener.address, query)
                    if reply is not None:
                        self._send_udp(listener.udp, reply, query, peer)
                    else:
                        threading.Thread(
                            target=self._udp_forward_job,
                            args=(listener, query, peer),
                            daemon=True,
                        ).start()
                else:
                    try:
                        conn, peer = listener.tcp.accept()
                    except OSError:
                        continue
                    threading.Thread(
                        target=self._tcp_job, args=(listener.address, conn, peer), daemon=True
                    ).start()
            if time.monotonic() - last >= alive_check:
                last = time.monotonic()
                self._update_quietly(force=False)

    def _update_quietly(self, force: bool) -> None:
        try:
            self.update(force)
        except sqlite3.Error:
            pass


def _has_edns(query: bytes) -> bool:
    return len(query) >= 12 and struct.unpack("!H", query[10:12])[0] > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-dns")
    parser.add_argument("--db", required=True)
    parser.add_argument("--address", required=True, help="must be served before ready")
    parser.add_argument("--resolv", default="/etc/resolv.conf")
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    ipaddress.IPv4Address(args.address)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, lambda *_: None)  # wakes the loop (set_wakeup_fd)
    server = Server(Records(args.db), Upstreams(args.resolv))
    try:
        server.update(force=True)
        if args.address not in server.listeners:
            Listener(args.address).close()  # for the error's message
            raise OSError("no running container on this network in the store")
    except OSError as err:
        print(f"error: cannot listen on {args.address}:53: {err}", flush=True)
        return 1
    if args.pidfile:
        tmp = f"{args.pidfile}.{os.getpid()}"
        Path(tmp).write_text(str(os.getpid()))
        os.replace(tmp, args.pidfile)
    print("ready", flush=True)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    server.serve()
    if args.pidfile:
        try:
            if Path(args.pidfile).read_text().strip() == str(os.getpid()):
                os.unlink(args.pidfile)
        except OSError:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
