"""Network records in the shared SQLite store.

Tables (created lazily, ``CREATE TABLE IF NOT EXISTS``):

- ``networks``: one row per network, the built-in ``bridge``/``host``/``none`` included.
- ``net_containers``: a container's network mode and, while it runs, its netns.
- ``net_endpoints``: a container's attachment to a network. The row exists while the
  container is configured for the network; ``ip``/``mac``/``host_if`` are set only while
  it runs, so an address is allocated at start and released at stop, as Docker does.
  ``UNIQUE(network_id, ip)`` makes a double allocation impossible even across processes.
- ``net_ports``: published ports of running containers (the source of the NAT rules).
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from dockyard.db import Database
from dockyard.records import field, record

SCHEMA = """
CREATE TABLE IF NOT EXISTS networks (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    driver TEXT NOT NULL,               -- bridge | host | null
    created TEXT NOT NULL,              -- RFC 3339 with nanoseconds
    subnet TEXT,                        -- IPv4 CIDR, bridge networks only
    gateway TEXT,
    ip_range TEXT,                      -- allocate from this part of the subnet only
    user_subnet INTEGER NOT NULL DEFAULT 0,  -- the user chose the subnet (static IPs allowed)
    internal INTEGER NOT NULL DEFAULT 0,
    attachable INTEGER NOT NULL DEFAULT 0,
    builtin INTEGER NOT NULL DEFAULT 0, -- bridge, host, none: cannot be removed
    bridge TEXT,                        -- the Linux bridge's name
    options TEXT NOT NULL DEFAULT '{}',
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS net_containers (
    container_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,                 -- fallback name for DNS when no containers row exists
    mode TEXT NOT NULL,                 -- bridge | host | none | container:<id>
    netns TEXT,                         -- netns file we created, while running
    hostname TEXT NOT NULL DEFAULT '',
    dns TEXT NOT NULL DEFAULT '[]',     -- upstream servers for the embedded DNS (--dns)
    active INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS net_endpoints (
    network_id TEXT NOT NULL,
    container_id TEXT NOT NULL,
    seq INTEGER NOT NULL,               -- attach order: the lowest gives the default route
    aliases TEXT NOT NULL DEFAULT '[]',
    requested_ip TEXT,                  -- --ip
    ip TEXT,                            -- allocated address while running
    mac TEXT,
    endpoint_id TEXT,
    host_if TEXT,                       -- host side of the veth pair
    container_if TEXT,                  -- eth0, eth1, ...
    PRIMARY KEY (network_id, container_id)
);
CREATE UNIQUE INDEX IF NOT EXISTS net_endpoints_ip ON net_endpoints(network_id, ip);
CREATE TABLE IF NOT EXISTS net_ports (
    container_id TEXT NOT NULL,
    protocol TEXT NOT NULL,             -- tcp | udp
    host_ip TEXT NOT NULL,              -- "" = every host address
    host_port INTEGER NOT NULL,
    container_ip TEXT NOT NULL,
    container_port INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS net_ports_container ON net_ports(container_id)
"""


@record
class NetworkRecord:
    id: str
    name: str
    driver: str
    created: str
    subnet: str | None = None
    gateway: str | None = None
    ip_range: str | None = None
    user_subnet: bool = False
    internal: bool = False
    attachable: bool = False
    builtin: bool = False
    bridge: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def is_bridge(self) -> bool:
        return self.driver == "bridge"

    @property
    def is_default_bridge(self) -> bool:
        return self.builtin and self.driver == "bridge"

    @property
    def prefixlen(self) -> int:
        return int(self.subnet.split("/")[1]) if self.subnet else 0


@record
class Endpoint:
    network_id: str
    container_id: str
    seq: int
    aliases: list[str] = field(default_factory=list)
    requested_ip: str | None = None
    ip: str | None = None
    mac: str | None = None
    endpoint_id: str | None = None
    host_if: str | None = None
    container_if: str | None = None


@record
class NetContainer:
    container_id: str
    name: str
    mode: str
    netns: str | None = None
    hostname: str = ""
    dns: list[str] = field(default_factory=list)
    active: bool = False


@record
class PortRecord:
    container_id: str
    protocol: str
    host_ip: str
    host_port: int
    container_ip: str
    container_port: int


def ensure_schema(db: Database) -> None:
    """Create the network tables once per store (a read when they exist)."""
    have = db.query("SELECT 1 FROM sqlite_master WHERE type='table' AND name='net_ports'")
    if have:
        return
    with db.transaction() as conn:
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)


def _network(row: sqlite3.Row) -> NetworkRecord:
    return NetworkRecord(
        id=row["id"],
        name=row["name"],
        driver=row["driver"],
        created=row["created"],
        subnet=row["subnet"],
        gateway=row["gateway"],
        ip_range=row["ip_range"],
        user_subnet=bool(row["user_subnet"]),
        internal=bool(row["internal"]),
        attachable=bool(row["attachable"]),
        builtin=bool(row["builtin"]),
        bridge=row["bridge"],
        options=json.loads(row["options"]),
        labels=json.loads(row["labels"]),
    )


def _endpoint(row: sqlite3.Row) -> Endpoint:
    data: dict[str, Any] = dict(row)
    data["aliases"] = json.loads(data["aliases"])
    return Endpoint(**data)


def networks(db: sqlite3.Connection) -> list[NetworkRecord]:
    rows = db.execute("SELECT * FROM networks ORDER BY created").fetchall()
    return [_network(r) for r in rows]


def network_by_id(db: sqlite3.Connection, network_id: str) -> NetworkRecord | None:
    rows = db.execute("SELECT * FROM networks WHERE id = ?", (network_id,)).fetchall()
    return _network(rows[0]) if rows else None


def insert_network(conn: sqlite3.Connection, net: NetworkRecord) -> None:
    conn.execute(
        "INSERT INTO networks (id, name, driver, created, subnet, gateway, ip_range, "
        "user_subnet, internal, attachable, builtin, bridge, options, labels) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            net.id,
            net.name,
            net.driver,
            net.created,
            net.subnet,
            net.gateway,
            net.ip_range,
            int(net.user_subnet),
            int(net.internal),
            int(net.attachable),
            int(net.builtin),
            net.bridge,
            json.dumps(net.options),
            json.dumps(net.labels),
        ),
    )


def endpoints(
    db: sqlite3.Connection,
    *,
    container_id: str | None = None,
    network_id: str | None = None,
) -> list[Endpoint]:
    sql, params = "SELECT * FROM net_endpoints WHERE 1=1", []
    if container_id is not None:
        sql += " AND container_id = ?"
        params.append(container_id)
    if network_id is not None:
        sql += " AND network_id = ?"
        params.append(network_id)
    rows = db.execute(sql + " ORDER BY seq", tuple(params)).fetchall()
    return [_endpoint(r) for r in rows]


def insert_endpoint(conn: sqlite3.Connection, ep: Endpoint) -> None:
    conn.execute(
        "INSERT INTO net_endpoints (network_id, container_id, seq, aliases, requested_ip) "
        "VALUES (?, ?, ?, ?, ?)",
        (ep.network_id, ep.container_id, ep.seq, json.dumps(ep.aliases), ep.requested_ip),
    )


def activate_endpoint(conn: sqlite3.Connection, ep: Endpoint) -> None:
    conn.execute(
        "UPDATE net_endpoints SET ip = ?, mac = ?, endpoint_id = ?, host_if = ?, "
        "container_if = ? WHERE network_id = ? AND container_id = ?",
        (
            ep.ip,
            ep.mac,
            ep.endpoint_id,
            ep.host_if,
            ep.container_if,
            ep.network_id,
            ep.container_id,
        ),
    )


def release_endpoint(conn: sqlite3.Connection, network_id: str, container_id: str) -> None:
    conn.execute(
        "UPDATE net_endpoints SET ip = NULL, mac = NULL, endpoint_id = NULL, host_if = NULL, "
        "container_if = NULL WHERE network_id = ? AND container_id = ?",
        (network_id, container_id),
    )


def net_container(db: sqlite3.Connection, container_id: str) -> NetContainer | None:
    rows = db.execute(
        "SELECT * FROM net_containers WHERE container_id = ?", (container_id,)
    ).fetchall()
    if not rows:
        return None
    row = rows[0]
    return NetContainer(
        container_id=row["container_id"],
        name=row["name"],
        mode=row["mode"],
        netns=row["netns"],
        hostname=row["hostname"],
        dns=json.loads(row["dns"]),
        active=bool(row["active"]),
    )


def save_net_container(conn: sqlite3.Connection, nc: NetContainer) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO net_containers (container_id, name, mode, netns, hostname, dns, "
        "active) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (
            nc.container_id,
            nc.name,
            nc.mode,
            nc.netns,
            nc.hostname,
            json.dumps(nc.dns),
            int(nc.active),
        ),
    )


def active_containers(db: sqlite3.Connection) -> list[str]:
    return [r[0] for r in db.execute("SELECT container_id FROM net_containers WHERE active = 1")]


def ports(db: sqlite3.Connection, container_id: str | None = None) -> list[PortRecord]:
    sql = "SELECT * FROM net_ports"
    params: tuple[str, ...] = ()
    if container_id is not None:
        sql, params = sql + " WHERE container_id = ?", (container_id,)
    rows = db.execute(sql + " ORDER BY container_port, protocol, host_ip", params).fetchall()
    return [PortRecord(**dict(r)) for r in rows]


def insert_port(conn: sqlite3.Connection, p: PortRecord) -> None:
    conn.execute(
        "INSERT INTO net_ports (container_id, protocol, host_ip, host_port, container_ip, "
        "container_port) VALUES (?, ?, ?, ?, ?, ?)",
        (p.container_id, p.protocol, p.host_ip, p.host_port, p.container_ip, p.container_port),
    )


def container_names(db: sqlite3.Connection) -> dict[str, str]:
    """Current names by container ID: the engine's ``containers`` table, else ours."""
    names = {r[0]: r[1] for r in db.execute("SELECT container_id, name FROM net_containers")}
    try:
        for cid, name in db.execute("SELECT id, name FROM containers"):
            names[cid] = name
    except sqlite3.OperationalError:
        pass
    return names
