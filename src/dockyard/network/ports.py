"""Published ports: choosing host ports, detecting conflicts, Docker's renderings.

A host port is free when no other running container of the store publishes it
(checked in the same write transaction that records it) and when the host lets us
bind() it; the socket is closed right away (the kernel's DNAT does the forwarding,
so no process has to hold it).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from dockyard.containers.spec import ContainerSpec, PortBinding
from dockyard.errors import Conflict, InvalidArgument
from dockyard.network.options import parse_expose
from dockyard.network.store import PortRecord, insert_port


def exposed_ports(spec: ContainerSpec, image_config: dict[str, Any]) -> list[str]:
    """``"80/tcp"`` keys: the image's EXPOSE, ``--expose`` and every published port."""
    keys = list((image_config or {}).get("ExposedPorts") or {})
    for value in getattr(spec, "expose", None) or []:
        keys += parse_expose(str(value))
    keys += [f"{b.container_port}/{b.protocol}" for b in spec.ports]
    seen: dict[str, None] = {}
    for key in keys:
        port, _, proto = key.partition("/")
        seen.setdefault(f"{int(port)}/{proto or 'tcp'}", None)
    return list(seen)


def wanted_bindings(spec: ContainerSpec, image_config: dict[str, Any]) -> list[PortBinding]:
    """``-p`` bindings plus, with ``-P``, a random host port for every other exposed port."""
    bindings = list(spec.ports)
    if spec.publish_all:
        published = {f"{b.container_port}/{b.protocol}" for b in bindings}
        for key in exposed_ports(spec, image_config):
            if key not in published:
                port, _, proto = key.partition("/")
                bindings.append(PortBinding(container_port=int(port), protocol=proto))
    return bindings


def ephemeral_range() -> tuple[int, int]:
    try:
        low, high = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999


def can_bind(protocol: str, host_ip: str, port: int) -> OSError | None:
    """None if the host lets us bind the port, else the error."""
    import socket

    kind = socket.SOCK_STREAM if protocol == "tcp" else socket.SOCK_DGRAM
    with socket.socket(socket.AF_INET, kind) as s:
        if protocol == "tcp":
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is no conflict
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as err:
            return err
    return None


def _clashes(used: list[PortRecord], protocol: str, host_ip: str, port: int) -> bool:
    for p in used:
        if p.protocol == protocol and p.host_port == port:
            if (
                not p.host_ip
                or not host_ip
                or p.host_ip == host_ip
                or "0.0.0.0" in (p.host_ip, host_ip)
            ):
                return True
    return False


def allocate(
    conn: sqlite3.Connection,
    container_id: str,
    endpoint_name: str,
    container_ip: str,
    bindings: list[PortBinding],
) -> list[PortRecord]:
    """Record the bindings with their host ports; call inside a write transaction."""
    used = [
        PortRecord(**dict(r))
        for r in conn.execute("SELECT * FROM net_ports WHERE container_id != ?", (container_id,))
    ]
    conn.execute("DELETE FROM net_ports WHERE container_id = ?", (container_id,))
    records: list[PortRecord] = []
    for b in bindings:
        host_ip = "" if b.host_ip in ("", "0.0.0.0") else b.host_ip
        shown = host_ip or "0.0.0.0"
        end = int(getattr(b, "host_port_end", 0) or 0)
        if b.host_port and not end:
            if _clashes(used + records, b.protocol, host_ip, b.host_port):
                raise Conflict(
                    f"driver failed programming external connectivity on endpoint "
                    f"{endpoint_name}: Bind for {shown}:{b.host_port} failed: port is already "
                    f"allocated"
                )
            err = can_bind(b.protocol, host_ip, b.host_port)
            if err is not None:
                raise Conflict(
                    f"driver failed programming external connectivity on endpoint "
                    f"{endpoint_name}: listen {b.protocol}4 {shown}:{b.host_port}: bind: "
                    f"{(err.strerror or str(err)).lower()}"
                )
            port = b.host_port
        else:
            if b.host_port:
                candidates = list(range(b.host_port, end + 1))
            else:
                low, high = ephemeral_range()
                import random

                start = random.randint(low, high)
                candidates = list(range(start, high + 1)) + list(range(low, start))
            port = 0
            for candidate in candidates:
                if not _clashes(used + records, b.protocol, host_ip, candidate) and (
                    can_bind(b.protocol, host_ip, candidate) is None
                ):
                    port = candidate
                    break
            if not port:
                raise Conflict(
                    f"driver failed programming external connectivity on endpoint "
                    f"{endpoint_name}: no free host port for {b.container_port}/{b.protocol}"
                )
        record = PortRecord(container_id, b.protocol, host_ip, port, container_ip, b.container_port)
        insert_port(conn, record)
        records.append(record)
    return records


def ports_settings(records: list[PortRecord], exposed: list[str]) -> dict[str, Any]:
    """NetworkSettings.Ports: every exposed port, with its host bindings or null."""
    result: dict[str, Any] = {key: None for key in exposed}
    for r in records:
        key = f"{r.container_port}/{r.protocol}"
        entry = {"HostIp": r.host_ip or "0.0.0.0", "HostPort": str(r.host_port)}
        if not isinstance(result.get(key), list):
            result[key] = []
        result[key].append(entry)
    return result


def port_lines(records: list[PortRecord], port: str | None = None) -> list[str]:
    """``docker port`` output: all mappings, or the host addresses of one port."""
    ordered = sorted(records, key=lambda r: (r.container_port, r.protocol, r.host_ip, r.host_port))
    if port is None:
        return [
            f"{r.container_port}/{r.protocol} -> {r.host_ip or '0.0.0.0'}:{r.host_port}"
            for r in ordered
        ]
    number, _, proto = port.partition("/")
    try:
        wanted = int(number)
    except ValueError:
        raise InvalidArgument(f"invalid port: {port}") from None
    proto = proto or "tcp"
    return [
        f"{r.host_ip or '0.0.0.0'}:{r.host_port}"
        for r in ordered
        if r.container_port == wanted and r.protocol == proto
    ]


def display_ports(records: list[PortRecord], exposed: list[str]) -> str:
    """The PORTS column of ``ps``: "0.0.0.0:8080->80/tcp, 443/tcp" (ranges grouped)."""
    entries: list[tuple[int, str, str, int]] = []  # (container port, proto, host ip, host port)
    published = set()
    for r in records:
        entries.append((r.container_port, r.protocol, r.host_ip or "0.0.0.0", r.host_port))
        published.add(f"{r.container_port}/{r.protocol}")
    for key in exposed:
        if key not in published:
            port, _, proto = key.partition("/")
            entries.append((int(port), proto, "", 0))
    groups: dict[str, list[list[int]]] = {}
    mappings = []
    for cport, proto, ip, hport in sorted(entries):
        if ip and hport != cport:
            mappings.append(f"{ip}:{hport}->{cport}/{proto}")
            continue
        key = f"{ip}/{proto}" if ip else proto
        runs = groups.setdefault(key, [])
        if runs and runs[-1][1] + 1 == cport:
            runs[-1][1] = cport
        else:
            runs.append([cport, cport])
    out = []
    for key, runs in groups.items():
        ip, _, proto = key.rpartition("/")
        for first, last in runs:
            span = str(first) if first == last else f"{first}-{last}"
            out.append(f"{ip}:{span}->{span}/{proto}" if ip else f"{span}/{proto}")
    return ", ".join(sorted(out) + mappings)
