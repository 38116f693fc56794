"""Docker's renderings of a container's networking (inspect's NetworkSettings)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.containers.spec import ContainerSpec
from dockyard.errors import NotFound
from dockyard.network import options, ports, store
from dockyard.network.store import Endpoint, NetworkRecord

if TYPE_CHECKING:
    from dockyard.network.attach import Attacher


def network_settings(
    mgr: Attacher, container_id: str, spec: ContainerSpec, image_config: dict[str, Any]
) -> dict[str, Any]:
    """NetworkSettings from the records: addresses while running, configuration otherwise."""
    nc = store.net_container(mgr.db.conn, container_id)
    active = nc is not None and nc.active
    exposed = ports.exposed_ports(spec, image_config)
    result: dict[str, Any] = {
        "Bridge": "",
        "SandboxID": (nc.container_id if active and nc and nc.netns else ""),
        "SandboxKey": (nc.netns or "") if active and nc else "",
        "HairpinMode": False,
        "LinkLocalIPv6Address": "",
        "LinkLocalIPv6PrefixLen": 0,
        "Ports": ports.ports_settings(store.ports(mgr.db.conn, container_id), exposed)
        if active
        else {},
        "SecondaryIPAddresses": None,
        "SecondaryIPv6Addresses": None,
        "EndpointID": "",
        "Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "IPAddress": "",
        "IPPrefixLen": 0,
        "IPv6Gateway": "",
        "MacAddress": "",
        "Networks": {},
    }
    mode = options.parse_network_mode(spec.network_mode)
    if mode.startswith("container:"):
        return result
    names = store.container_names(mgr.db.conn)
    name = names.get(container_id, container_id[:12]).lstrip("/")
    pairs: list[tuple[NetworkRecord, Endpoint | None]] = []
    if mode in ("host", "none"):
        pairs = [(mgr._network_for_mode(mode), None)]
    else:
        for ep in store.endpoints(mgr.db.conn, container_id=container_id):
            net = store.network_by_id(mgr.db.conn, ep.network_id)
            if net is not None:
                pairs.append((net, ep))
        if not pairs:
            try:
                pairs = [(mgr._network_for_mode(mode), None)]
            except NotFound:
                pairs = []
    for net, endpoint in pairs:
        entry = _endpoint_settings(net, endpoint, name, container_id[:12], spec)
        result["Networks"][net.name] = entry
        if net.is_default_bridge and entry["IPAddress"]:
            for key in ("EndpointID", "Gateway", "IPAddress", "IPPrefixLen", "MacAddress"):
                result[key] = entry[key]
    return result


def _endpoint_settings(
    net: NetworkRecord, ep: Endpoint | None, name: str, short: str, spec: ContainerSpec
) -> dict[str, Any]:
    ip = ep.ip if ep else None
    aliases = list(ep.aliases) if ep else (list(spec.network_aliases) if not net.builtin else [])
    user = net.is_bridge and not net.builtin
    requested = ep.requested_ip if ep else None
    return {
        "IPAMConfig": {"IPv4Address": requested} if requested else None,
        "Links": None,
        "Aliases": (aliases + [short] if ip else aliases) if user and (aliases or ip) else None,
        "MacAddress": (ep.mac or "") if ep else "",
        "DriverOpts": None,
        "NetworkID": net.id,
        "EndpointID": (ep.endpoint_id or "") if ep else "",
        "Gateway": (net.gateway or "") if ip else "",
        "IPAddress": ip or "",
        "IPPrefixLen": net.prefixlen if ip else 0,
        "IPv6Gateway": "",
        "GlobalIPv6Address": "",
        "GlobalIPv6PrefixLen": 0,
        "DNSNames": [name, *aliases, short] if user and ip else None,
    }
