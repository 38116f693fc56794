"""Network settings: address pools, names of kernel objects, the host's resolver file.

Every kernel object a store creates (bridges, the nftables table, the iptables chain)
carries a ``dy`` prefix plus, for any store but the default one, a hash of its root,
so that several stores (a user's and the test suite's) never touch each other's
objects. Values come from the environment, else ``<root>/network.json``, else defaults:

- ``DOCKYARD_DEFAULT_BRIDGE_SUBNET`` / ``"default-bridge-subnet"``: the default bridge's
  subnet (``"bip"`` = gateway/prefix, as in Docker's daemon.json, is accepted too).
- ``DOCKYARD_DEFAULT_BRIDGE`` / ``"bridge-name"``: the default bridge's interface name.
- ``"default-address-pools"``: ``[{"base": "10.222.0.0/16", "size": 24}]`` for user networks.
- ``DOCKYARD_RESOLV_CONF`` / ``"resolv-conf"``: the host resolver file to copy.
- ``DOCKYARD_FIREWALL`` / ``"firewall"``: ``nftables`` (default when ``nft`` exists) or
  ``iptables``.
- ``DOCKYARD_NETWORK_CONFIG``: another path for the JSON file.
"""

from __future__ import annotations

import importlib
import ipaddress
import json
import os
from pathlib import Path

from dockyard.config import DEFAULT_ROOT, Paths
from dockyard.errors import InvalidArgument
from dockyard.fsutil import which
from dockyard.records import field, record

IPv4Net = ipaddress.IPv4Network

DEFAULT_BRIDGE_POOL = ("172.30.0.0/16", "172.31.0.0/16", "10.223.0.0/16:24")
USER_POOL = ("10.222.0.0/16:24", "10.221.0.0/16:24")


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` in hex, by CPython's builtin module when it has one: importing
    hashlib loads OpenSSL (~2.5 ms), more than a container's whole network set-up."""
    for name in ("_sha2", "_sha256", "hashlib"):  # 3.12+, 3.11, anything else
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        return str(module.sha256(text.encode()).hexdigest())
    raise ImportError("no SHA-256 implementation")


@record(frozen=True)
class Pool:
    """A base network cut into subnets of ``size`` prefix length."""

    base: IPv4Net
    size: int

    def subnets(self) -> list[IPv4Net]:
        if self.size <= self.base.prefixlen:
            return [self.base]
        return list(self.base.subnets(new_prefix=self.size))


def _pool(text: str) -> Pool:
    base, _, size = text.partition(":")
    net = ipaddress.IPv4Network(base, strict=False)
    return Pool(net, int(size) if size else net.prefixlen)


@record
class NetConfig:
    """Resolved network settings for one store."""

    suffix: str  # "" for the default root, else a hash of the root
    default_bridge: str
    default_subnet: IPv4Net | None
    default_gateway: str | None
    default_pools: list[Pool]
    user_pools: list[Pool]
    resolv_conf: str
    firewall: str  # nftables | iptables
    dns: list[str] = field(default_factory=list)

    @property
    def table(self) -> str:
        """The nftables table (family ip) holding every rule of this store."""
        return f"dockyard{self.suffix and '_' + self.suffix}"

    @property
    def iptables_prefix(self) -> str:
        """Prefix of this store's iptables chains (DOCKYARD-FORWARD, DY-<HASH>-FORWARD, ...)."""
        return f"DY-{self.suffix.upper()}" if self.suffix else "DOCKYARD"

    def bridge_name(self, network_id: str) -> str:
        """A user network's bridge: ``dy-`` plus 12 hex digits, 15 characters at most."""
        return f"dy-{sha256_hex(self.suffix + network_id)[:12]}"

    def veth_name(self, container_id: str, network_id: str) -> str:
        """The host side of a container's veth pair: ``dy`` plus 8 hex digits."""
        return f"dy{sha256_hex(self.suffix + container_id + network_id)[:8]}"


def _read_file(paths: Paths) -> dict[str, object]:
    path = os.environ.get("DOCKYARD_NETWORK_CONFIG") or str(paths.root / "network.json")
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise InvalidArgument(f"cannot read network configuration {path}: {err}") from err
    if not isinstance(data, dict):
        raise InvalidArgument(f"network configuration {path} must be a JSON object")
    return data


def load(paths: Paths) -> NetConfig:
    """Settings for the store at ``paths``."""
    data = _read_file(paths)
    root = str(paths.root)
    suffix = "" if root == DEFAULT_ROOT else sha256_hex(root)[:8]
    bridge = os.environ.get("DOCKYARD_DEFAULT_BRIDGE") or str(data.get("bridge-name") or "")
    if not bridge:
        bridge = "dyd0" if not suffix else f"dyd{suffix}"
    if len(bridge) > 15:
        raise InvalidArgument(f"bridge name {bridge!r} is longer than 15 characters")
    subnet_text = os.environ.get("DOCKYARD_DEFAULT_BRIDGE_SUBNET") or data.get(
        "default-bridge-subnet"
    )
    gateway: str | None = None
    bip = data.get("bip")
    if not subnet_text and isinstance(bip, str):
        iface = ipaddress.IPv4Interface(bip)
        subnet_text, gateway = str(iface.network), str(iface.ip)
    subnet = None
    if subnet_text:
        try:
            subnet = ipaddress.IPv4Network(str(subnet_text), strict=False)
        except ValueError as err:
            raise InvalidArgument(f"invalid default bridge subnet {subnet_text}: {err}") from err
    pools = data.get("default-address-pools")
    user_pools = [_pool(p) for p in USER_POOL]
    if isinstance(pools, list) and pools:
        user_pools = [
            Pool(ipaddress.IPv4Network(str(p["base"]), strict=False), int(p.get("size", 24)))
            for p in pools
            if isinstance(p, dict)
        ]
    resolv = os.environ.get("DOCKYARD_RESOLV_CONF") or str(
        data.get("resolv-conf") or "/etc/resolv.conf"
    )
    firewall = os.environ.get("DOCKYARD_FIREWALL") or str(data.get("firewall") or "")
    if not firewall:
        firewall = "nftables" if which("nft") else "iptables"
    if firewall not in ("nftables", "iptables"):
        raise InvalidArgument(f"unknown firewall backend {firewall!r}: use nftables or iptables")
    dns = data.get("dns")
    return NetConfig(
        suffix=suffix,
        default_bridge=bridge,
        default_subnet=subnet,
        default_gateway=gateway,
        default_pools=[_pool(p) for p in DEFAULT_BRIDGE_POOL],
        user_pools=user_pools,
        resolv_conf=resolv,
        firewall=firewall,
        dns=[str(d) for d in dns] if isinstance(dns, list) else [],
    )
