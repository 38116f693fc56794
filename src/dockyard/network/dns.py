"""The embedded DNS server of a user-defined network (``python -m dockyard.network.dns``).

One small process per network with running containers listens on the network's
gateway address, port 53 (UDP and TCP). It answers A and PTR queries for the
containers attached to the network -- by name, ``name.network``, network alias and
short ID -- reading the endpoints straight from the state database (re-read when
SQLite's ``data_version`` says another process committed), so it follows
containers as they start, stop, connect, disconnect or get renamed without any
signal. Other names go to the querying container's ``--dns`` servers, else to the
host's resolvers (loopback ones included: this process runs in the host's
namespace). Internal networks do not forward.

Lifetime: started when the first container of the network starts, stopped when
the last one stops or the network is removed; it also exits by itself when its
network disappears from the database or its address from the host.
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


class Records:
    """Names of one network's running containers, reloaded when the database changes."""

    def __init__(self, db_path: str, network_id: str) -> None:
        self.conn = sqlite3.connect(db_path, timeout=30, check_same_thread=False)
        self.network_id = network_id
        self.lock = threading.Lock()
        self.version = -1
        self.exists = True
        self.internal = False
        self.names: dict[str, list[str]] = {}
        self.reverse: dict[str, str] = {}
        self.upstream_by_ip: dict[str, list[str]] = {}

    def refresh(self) -> None:
        with self.lock:
            version = self.conn.execute("PRAGMA data_version").fetchone()[0]
            if version == self.version:
                return
            self.version = version
            self._load()

    def _load(self) -> None:
        net = self.conn.execute(
            "SELECT name, internal FROM networks WHERE id = ?", (self.network_id,)
        ).fetchone()
        if net is None:
            self.exists = False
            return
        netname, self.internal = net[0].lower(), bool(net[1])
        names: dict[str, list[str]] = {}
        reverse: dict[str, str] = {}
        upstream: dict[str, list[str]] = {}
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
        rows = self.conn.execute(
            "SELECT container_id, ip, aliases FROM net_endpoints "
            "WHERE network_id = ? AND ip IS NOT NULL ORDER BY seq",
            (self.network_id,),
        ).fetchall()
        for cid, ip, aliases in rows:
            name = str(current.get(cid, cid[:12])).lstrip("/").lower()
            for key in [name, f"{name}.{netname}", cid[:12], *json.loads(aliases)]:
                names.setdefault(key.lower().rstrip("."), []).append(ip)
            reverse[ip] = f"{name}.{netname}"
            if dns.get(cid):
                upstream[ip] = dns[cid]
        self.names, self.reverse, self.upstream_by_ip = names, reverse, upstream

    def answer(self, name: str, qtype: int) -> tuple[int, list[tuple[int, bytes]]] | None:
        """(rcode, answers) for a name we own, None to forward it."""
        self.refresh()
        key = name.lower().rstrip(".")
        if qtype == PTR and key.endswith(".in-addr.arpa"):
            octets = key[: -len(".in-addr.arpa")].split(".")
            target = self.reverse.get(".".join(reversed(octets)))
            return (NOERROR, [(PTR, encode_name(target))]) if target else None
        ips = self.names.get(key)
        if not ips:
            return None
        if qtype != A:
            return NOERROR, []  # known name, no record of that type (IPv4 only)
        return NOERROR, [(A, socket.inet_aton(ip)) for ip in ips]


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


class Server:
    def __init__(self, records: Records, upstreams: Upstreams, address: str) -> None:
        self.records = records
        self.upstreams = upstreams
        self.address = address
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind((address, 53))
        self.tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.tcp.bind((address, 53))
        self.tcp.listen(64)

    def local(self, query: bytes) -> bytes | None:
        """A reply from our records, SERVFAIL when we cannot forward, None to forward."""
        parsed = parse_query(query)
        if parsed is None:
            return None
        try:
            local = self.records.answer(parsed[2], parsed[3])
        except sqlite3.Error:
            return servfail(query)
        if local is not None:
            return build_reply(query, *local)
        return servfail(query) if self.records.internal else None

    def forward(self, query: bytes, client: str, tcp: bool) -> bytes:
        servers = self.records.upstream_by_ip.get(client) or self.upstreams.get()
        reply = (forward_tcp if tcp else forward_udp)(query, servers, self.address)
        return reply if reply is not None else servfail(query)

    def _send_udp(self, reply: bytes, query: bytes, peer: tuple[str, int]) -> None:
        if len(reply) > 512 and not _has_edns(query):
            parsed = parse_query(query)
            end = parsed[4] if parsed else 12
            flags = struct.unpack("!H", reply[2:4])[0] | 0x0200  # TC: retry over TCP
            reply = reply[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + query[12:end]
        try:
            self.udp.sendto(reply, peer)
        except OSError:
            pass

    def _udp_forward_job(self, query: bytes, peer: tuple[str, int]) -> None:
        self._send_udp(self.forward(query, peer[0], tcp=False), query, peer)

    def _tcp_job(self, conn: socket.socket, peer: tuple[str, int]) -> None:
        with conn:
            conn.settimeout(10.0)
            try:
                while True:
                    size = struct.unpack("!H", _recv_exact(conn, 2))[0]
                    query = _recv_exact(conn, size)
                    if parse_query(query) is None:
                        return
                    reply = self.local(query) or self.forward(query, peer[0], tcp=True)
                    conn.sendall(struct.pack("!H", len(reply)) + reply)
            except (OSError, struct.error):
                return

    def serve(self, alive_check: float = 2.0) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.udp, selectors.EVENT_READ)
        sel.register(self.tcp, selectors.EVENT_READ)
        last = time.monotonic()
        while True:
            for key, _ in sel.select(timeout=alive_check):
                if key.fileobj is self.udp:
                    query, peer = self.udp.recvfrom(65535)
                    if parse_query(query) is None:
                        continue
                    reply = self.local(query)
                    if reply is not None:
                        self._send_udp(reply, query, peer)
                    else:
                        job = threading.Thread(
                            target=self._udp_forward_job, args=(query, peer), daemon=True
                        )
                        job.start()
                else:
                    conn, peer = self.tcp.accept()
                    threading.Thread(target=self._tcp_job, args=(conn, peer), daemon=True).start()
            if time.monotonic() - last >= alive_check:
                last = time.monotonic()
                if not self._still_wanted():
                    return

    def _still_wanted(self) -> bool:
        try:
            self.records.refresh()
        except sqlite3.Error:
            return True
        if not self.records.exists:
            return False
        try:  # our address left the host: the bridge is gone
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
                probe.bind((self.address, 0))
        except OSError:
            return False
        return True


def _has_edns(query: bytes) -> bool:
    return len(query) >= 12 and struct.unpack("!H", query[10:12])[0] > 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dockyard-dns")
    parser.add_argument("--db", required=True)
    parser.add_argument("--network", required=True)
    parser.add_argument("--address", required=True)
    parser.add_argument("--resolv", default="/etc/resolv.conf")
    parser.add_argument("--pidfile")
    args = parser.parse_args(argv)
    ipaddress.IPv4Address(args.address)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        server = Server(Records(args.db, args.network), Upstreams(args.resolv), args.address)
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
