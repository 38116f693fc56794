"""Address management: subnets that do not clash with the host, addresses within them.

Subnets are checked against the host's routes and addresses (so a network never
shadows the LAN or another engine's bridge) and against this store's networks.
Container addresses are allocated inside a write transaction and recorded in
``net_endpoints`` whose ``UNIQUE(network_id, ip)`` index backs the guarantee.
"""

from __future__ import annotations

import ipaddress
import sqlite3
from collections.abc import Iterable

from dockyard.errors import Conflict, InvalidArgument
from dockyard.network.config import Pool

IPv4Net = ipaddress.IPv4Network


def host_networks(exclude_dev: Iterable[str] = ()) -> list[IPv4Net]:
    """Destinations of the host's IPv4 routes (every table) and its interface networks,
    but those of the ``exclude_dev`` interfaces, loopback and default routes."""
    from dockyard.network import kernel

    nl = kernel.host()
    skip = {i for i in (nl.link_index(name) for name in exclude_dev) if i is not None}
    entries = [(dst, plen) for dst, plen, oif in nl.ipv4_routes() if not oif or oif not in skip]
    entries += [(addr, plen) for addr, plen, index in nl.ipv4_addresses() if index not in skip]
    found: dict[IPv4Net, None] = {}  # ordered, without duplicates
    for address, prefixlen in dict.fromkeys(entries):
        net = ipaddress.IPv4Network(f"{address}/{prefixlen}", strict=False)
        if not net.is_loopback and net.prefixlen > 0:
            found[net] = None
    return list(found)


def pick_subnet(pools: Iterable[Pool], taken: Iterable[IPv4Net]) -> IPv4Net:
    """The first subnet of the pools overlapping nothing in ``taken``."""
    used = list(taken)
    for pool in pools:
        for candidate in pool.subnets():
            if not any(candidate.overlaps(t) for t in used):
                return candidate
    raise Conflict(
        "could not find an available, non-overlapping IPv4 address pool among the defaults "
        "to assign to the network: set --subnet or default-address-pools"
    )


def check_overlap(subnet: IPv4Net, others: Iterable[tuple[str, IPv4Net]]) -> None:
    for name, net in others:
        if subnet.overlaps(net):
            raise Conflict(
                f"invalid pool request: Pool overlaps with other one on this address space "
                f"({subnet} overlaps {net} of {name})"
            )


def parse_subnet(text: str) -> IPv4Net:
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError as err:
        raise InvalidArgument(f"invalid subnet {text}: {err}") from err
    if not isinstance(net, IPv4Net):
        raise InvalidArgument(f"IPv6 subnets are not supported: {text}")
    if net.prefixlen > 30:
        raise InvalidArgument(f"subnet {text} is too small: use a prefix length of 30 or less")
    return net


def parse_ipv4(text: str, what: str = "IP address") -> ipaddress.IPv4Address:
    try:
        addr = ipaddress.ip_address(text)
    except ValueError as err:
        raise InvalidArgument(f"invalid {what}: {text}") from err
    if not isinstance(addr, ipaddress.IPv4Address):
        raise InvalidArgument(f"IPv6 is not supported: {text}")
    return addr


def mac_for(ip: str) -> str:
    """Docker's scheme: 02:42 followed by the four address bytes (locally administered)."""
    octets = [int(o) for o in ip.split(".")]
    return "02:42:" + ":".join(f"{o:02x}" for o in octets)


def allocate(
    conn: sqlite3.Connection,
    network_id: str,
    subnet: str,
    gateway: str,
    ip_range: str | None,
    requested: str | None,
) -> str:
    """A free address in the network; call inside a write transaction."""
    net = ipaddress.IPv4Network(subnet)
    used = {
        r[0]
        for r in conn.execute(
            "SELECT ip FROM net_endpoints WHERE network_id = ? AND ip IS NOT NULL", (network_id,)
        )
    }
    used.add(gateway)
    if requested:
        addr = parse_ipv4(requested)
        if addr not in net or addr in (net.network_address, net.broadcast_address):
            raise InvalidArgument(f"Address {requested} does not belong to subnet {subnet}")
        if requested in used:
            raise Conflict(f"Address already in use: {requested}")
        return requested
    pool = ipaddress.IPv4Network(ip_range) if ip_range else net
    for addr in pool.hosts() if pool.prefixlen < 31 else pool:
        text = str(addr)
        if text not in used and addr not in (net.network_address, net.broadcast_address):
            return text
    raise Conflict(f"no available IPv4 addresses on this network's address pools ({pool})")
