"""Networks: create, list, inspect, remove, prune, connect, disconnect.

Container attachment (``prepare``/``teardown``) lives in ``attach.py``; this class
adds the network records on top of it. Every operation that changes kernel state
runs under one per-store file lock, and ends with a firewall sync from the DB.
"""

from __future__ import annotations

import builtins
import re
import time
from typing import Any

from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec
from dockyard.db import Database
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.ids import new_id
from dockyard.network import firewall, ipam, kernel, store
from dockyard.network.attach import Attacher, now_rfc3339
from dockyard.network.config import NetConfig
from dockyard.network.store import NetworkRecord

_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


class NetworkManager(Attacher):
    """The store's networks and the containers' attachments to them."""

    def __init__(self, paths: Paths, db: Database, config: NetConfig | None = None) -> None:
        super().__init__(paths, db, config)

    # -- lookup -------------------------------------------------------------

    def list(self) -> list[NetworkRecord]:
        return store.networks(self.db.conn)

    def get(self, ref: str) -> NetworkRecord:
        """A network by full ID, name or unique ID prefix (Docker's order)."""
        nets = self.list()
        for match in (lambda n: n.id == ref, lambda n: n.name == ref):
            found = [n for n in nets if match(n)]
            if found:
                return found[0]
        found = [n for n in nets if ref and n.id.startswith(ref)]
        if len(found) > 1:
            raise InvalidArgument(
                f"network {ref} is ambiguous ({len(found)} matches found based on ID prefix)"
            )
        if not found:
            raise NotFound(f"network {ref} not found")
        return found[0]

    # -- create / remove --------------------------------------------------------

    def create(
        self,
        name: str,
        *,
        driver: str = "bridge",
        subnet: str | None = None,
        gateway: str | None = None,
        ip_range: str | None = None,
        internal: bool = False,
        attachable: bool = False,
        labels: dict[str, str] | None = None,
        options: dict[str, str] | None = None,
        ipv6: bool = False,
    ) -> NetworkRecord:
        """A user-defined bridge network with its Linux bridge."""
        if not _NAME.fullmatch(name):
            raise InvalidArgument(
                f"invalid network name {name!r}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )
        if driver != "bridge":
            raise InvalidArgument(f"network driver {driver!r} is not supported: use bridge")
        if ipv6:
            raise InvalidArgument("IPv6 networks are not supported")
        options = dict(options or {})
        mtu = options.get("com.docker.network.driver.mtu", "1500")
        if not mtu.isdigit() or not 68 <= int(mtu) <= 65535:
            raise InvalidArgument(f"invalid MTU {mtu}")
        net_id = new_id()
        bridge = options.get("com.docker.network.bridge.name") or self.cfg.bridge_name(net_id)
        if len(bridge) > 15 or not re.fullmatch(r"[a-zA-Z0-9_.-]+", bridge):
            raise InvalidArgument(f"invalid bridge name {bridge!r}")
        with self.lock():
            existing = self.list()
            if any(n.name == name for n in existing):
                raise Conflict(f"network with name {name} already exists")
            if any(n.bridge == bridge for n in existing) or kernel.link_exists(bridge):
                raise Conflict(f"bridge {bridge} already exists")
            import ipaddress

            others = [(n.name, ipaddress.IPv4Network(n.subnet)) for n in existing if n.subnet]
            if subnet:
                net = ipam.parse_subnet(subnet)
                ipam.check_overlap(net, others)
            else:
                if gateway or ip_range:
                    raise InvalidArgument(
                        "no matching subnet for gateway or ip-range: set --subnet"
                    )
                taken = [n for _, n in others] + ipam.host_networks()
                net = ipam.pick_subnet(self.cfg.user_pools, taken)
            gw = str(next(net.hosts()))
            if gateway:
                if ipam.parse_ipv4(gateway, "gateway") not in net:
                    raise InvalidArgument(f"gateway {gateway} is not in subnet {net}")
                gw = gateway
            if ip_range:
                rng = ipam.parse_subnet(ip_range)
                if not rng.subnet_of(net):
                    raise InvalidArgument(f"ip-range {ip_range} is not in subnet {net}")
                ip_range = str(rng)
            record = NetworkRecord(
                id=net_id,
                name=name,
                driver="bridge",
                created=now_rfc3339(),
                subnet=str(net),
                gateway=gw,
                ip_range=ip_range,
                user_subnet=bool(subnet),
                internal=internal,
                attachable=attachable,
                bridge=bridge,
                options=options,
                labels=dict(labels or {}),
            )
            with self.db.transaction() as conn:
                store.insert_network(conn, record)
            try:
                self.make_bridge(record)
                firewall.forget_cache(self._ruleset_cache)
                self.sync_firewall()
            except BaseException:
                kernel.delete_link(bridge)
                with self.db.transaction() as conn:
                    conn.execute("DELETE FROM networks WHERE id = ?", (net_id,))
                self._sync_quietly()
                raise
        self._event("create", record)
        return record

    def _event(self, action: str, net: NetworkRecord, **extra: str) -> None:
        from dockyard import events

        attributes = {"name": net.name, "type": net.driver, **extra}
        events.emit(self.paths.root, "network", action, net.id, attributes)

    def remove(self, ref: str) -> NetworkRecord:
        net = self.get(ref)
        if net.builtin:
            raise Conflict(f"{net.name} is a pre-defined network and cannot be removed")
        with self.lock():
            active = [e for e in store.endpoints(self.db.conn, network_id=net.id) if e.ip]
            if active:
                raise Conflict(
                    f"error while removing network: network {net.name} id {net.id} has active endpoints"
                )
            with self.db.transaction() as conn:
                conn.execute("DELETE FROM net_endpoints WHERE network_id = ?", (net.id,))
                conn.execute("DELETE FROM networks WHERE id = ?", (net.id,))
            self._stop_dns(net)
            kernel.delete_link(net.bridge or "")
            self.sync_firewall()
        self._event("destroy", net)
        return net

    def prune(self, filters: dict[str, builtins.list[str]] | None = None) -> builtins.list[str]:
        """Remove the user-defined networks no running container uses; their names."""
        removed = []
        for net in self.list():
            if net.builtin or not _match_prune(net, filters or {}):
                continue
            if any(e.ip for e in store.endpoints(self.db.conn, network_id=net.id)):
                continue
            try:
                self.remove(net.id)
            except (Conflict, NotFound):
                continue
            removed.append(net.name)
        return removed

    # -- connect / disconnect ---------------------------------------------------

    def connect(
        self,
        ref: str,
        container_id: str,
        *,
        name: str,
        spec: ContainerSpec,
        aliases: builtins.list[str] | None = None,
        ip: str | None = None,
    ) -> None:
        """Attach a container (configured, and live when it runs) to a network."""
        net = self.get(ref)
        mode = spec.network_mode
        if net.driver == "host" or mode == "host":
            raise Conflict(
                "container cannot be disconnected from host network or connected to host network"
            )
        if net.driver == "null" or mode == "none" or mode.startswith("container:"):
            raise Conflict(
                "container sharing network namespace with another container or host cannot be "
                "connected to any other network"
                if mode.startswith("container:")
                else "container cannot be connected to multiple networks with one of the networks "
                "in private (none) mode"
            )
        if (aliases or ip) and net.is_default_bridge:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
                if aliases
                else "user specified IP address is supported on user defined networks only"
            )
        if ip:
            ipam.parse_ipv4(ip)
            if not net.user_subnet:
                raise InvalidArgument(
                    "user specified IP address is supported only when connecting to networks "
                    "with user configured subnets"
                )
        with self.lock():
            self.ensure_rows(container_id, name, spec)
            eps = store.endpoints(self.db.conn, container_id=container_id)
            if any(e.network_id == net.id for e in eps):
                raise Conflict(f"endpoint with name {name} already exists in network {net.name}")
            ep = store.Endpoint(
                network_id=net.id,
                container_id=container_id,
                seq=max((e.seq for e in eps), default=-1) + 1,
                aliases=list(aliases or []),
                requested_ip=ip,
            )
            with self.db.transaction() as conn:
                store.insert_endpoint(conn, ep)
            nc = store.net_container(self.db.conn, container_id)
            if nc is not None and nc.active and nc.netns and nc.mode == "bridge":
                try:
                    self.attach_live(nc, net, ep)
                except BaseException:
                    with self.db.transaction() as conn:
                        conn.execute(
                            "DELETE FROM net_endpoints WHERE network_id = ? AND container_id = ?",
                            (net.id, container_id),
                        )
                    raise
        self._event("connect", net, container=container_id)

    def disconnect(self, ref: str, container_id: str, *, force: bool = False) -> None:
        net = self.get(ref)
        with self.lock():
            eps = [
                e
                for e in store.endpoints(self.db.conn, container_id=container_id)
                if e.network_id == net.id
            ]
            nc = store.net_container(self.db.conn, container_id)
            if net.driver == "host" and nc is not None and nc.mode == "host":
                raise Conflict(
                    "container cannot be disconnected from host network or connected to host network"
                )
            if not eps:
                if force:
                    return
                raise NotFound(
                    f"container {container_id[:12]} is not connected to network {net.name}"
                )
            self.detach_live(container_id, net, eps[0])
            with self.db.transaction() as conn:
                conn.execute(
                    "DELETE FROM net_endpoints WHERE network_id = ? AND container_id = ?",
                    (net.id, container_id),
                )
        self._event("disconnect", net, container=container_id)

    # -- inspect ------------------------------------------------------------------

    def inspect(self, ref: str) -> dict[str, Any]:
        """Docker's ``network inspect`` document."""
        net = self.get(ref)
        names = store.container_names(self.db.conn)
        containers = {}
        for e in store.endpoints(self.db.conn, network_id=net.id):
            if e.ip:
                containers[e.container_id] = {
                    "Name": names.get(e.container_id, e.container_id[:12]).lstrip("/"),
                    "EndpointID": e.endpoint_id or "",
                    "MacAddress": e.mac or "",
                    "IPv4Address": f"{e.ip}/{net.prefixlen}",
                    "IPv6Address": "",
                }
        config: builtins.list[dict[str, str]] = []
        if net.subnet:
            entry = {"Subnet": net.subnet, "Gateway": net.gateway or ""}
            if net.ip_range:
                entry["IPRange"] = net.ip_range
            config.append(entry)
        options = dict(net.options)
        if net.is_default_bridge:
            options = {
                "com.docker.network.bridge.default_bridge": "true",
                "com.docker.network.bridge.enable_icc": "true",
                "com.docker.network.bridge.enable_ip_masquerade": "true",
                "com.docker.network.bridge.host_binding_ipv4": "0.0.0.0",
                "com.docker.network.bridge.name": net.bridge or "",
                "com.docker.network.driver.mtu": "1500",
            }
        return {
            "Name": net.name,
            "Id": net.id,
            "Created": net.created,
            "Scope": "local",
            "Driver": net.driver,
            "EnableIPv4": True,
            "EnableIPv6": False,
            "IPAM": {
                "Driver": "default",
                "Options": None if net.builtin else {},
                "Config": config if net.is_bridge else None,
            },
            "Internal": net.internal,
            "Attachable": net.attachable,
            "Ingress": False,
            "ConfigFrom": {"Network": ""},
            "ConfigOnly": False,
            "Containers": containers,
            "Options": options,
            "Labels": dict(net.labels),
        }


def parse_until(value: str) -> float:
    """A ``until=`` filter value: a duration before now, an RFC 3339 time or a Unix time."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    if re.fullmatch(r"(\d+(\.\d+)?(h|ms|m|s))+", value):
        total = sum(
            float(n) * units[u] for n, _, u in re.findall(r"(\d+(\.\d+)?)(h|ms|m|s)", value)
        )
        return time.time() - total
    try:
        return float(value)
    except ValueError:
        pass
    import calendar

    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return calendar.timegm(time.strptime(value[: 19 if "T" in fmt else 10], fmt))
        except ValueError:
            continue
    raise InvalidArgument(f"invalid until filter: {value}")


def created_ts(net: NetworkRecord) -> float:
    import calendar

    return calendar.timegm(time.strptime(net.created[:19], "%Y-%m-%dT%H:%M:%S"))


def match_labels(labels: dict[str, str], wanted: list[str], negate: bool = False) -> bool:
    for want in wanted:
        key, sep, value = want.partition("=")
        has = key in labels and (not sep or labels[key] == value)
        if has == negate:
            return False
    return True


def _match_prune(net: NetworkRecord, filters: dict[str, list[str]]) -> bool:
    for until in filters.get("until", []):
        if created_ts(net) >= parse_until(until):
            return False
    if not match_labels(net.labels, filters.get("label", [])):
        return False
    return match_labels(net.labels, filters.get("label!", []), negate=True)
