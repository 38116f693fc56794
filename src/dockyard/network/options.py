"""Parsing of the network flags and the files a container sees (/etc/hosts, resolv.conf).

``-p`` follows Docker's ``nat.ParsePortSpec``; ``--add-host`` its ``ValidateExtraHost``;
``resolv.conf`` its rules: loopback nameservers are dropped (they would point into the
container), and when none is left Google's public servers are used; containers on
user-defined networks get the embedded DNS server (on the network's gateway).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from typing import Any

from dockyard import records
from dockyard.containers.spec import ContainerSpec, PortBinding
from dockyard.errors import InvalidArgument
from dockyard.records import field, record

DEFAULT_DNS = ["8.8.8.8", "8.8.4.4"]
PROTOCOLS = ("tcp", "udp")

_HOSTS_HEADER = (
    "127.0.0.1\tlocalhost\n"
    "::1\tlocalhost ip6-localhost ip6-loopback\n"
    "fe00::0\tip6-localnet\n"
    "ff00::0\tip6-mcastprefix\n"
    "ff02::1\tip6-allnodes\n"
    "ff02::2\tip6-allrouters\n"
)


# -- -p / --publish ------------------------------------------------------------


def _port_range(text: str, what: str, value: str) -> tuple[int, int]:
    start, sep, end = text.partition("-")
    try:
        first = int(start)
        last = int(end) if sep else first
    except ValueError:
        raise InvalidArgument(f"invalid {what}: {text}") from None
    if not (1 <= first <= 65535 and 1 <= last <= 65535) or last < first:
        raise InvalidArgument(f"invalid {what}: {text}")
    return first, last


def _split_spec(raw: str) -> tuple[str, str, str]:
    """``[ip:][hostport:]containerport`` with an IPv6 address in brackets."""
    if raw.startswith("["):
        close = raw.find("]")
        if close < 0 or raw[close + 1 : close + 2] != ":":
            raise InvalidArgument(f"invalid IP address in port spec: {raw}")
        ip, rest = raw[1:close], raw[close + 2 :]
        host, sep, container = rest.partition(":")
        return (ip, host, container) if sep else (ip, "", host)
    parts = raw.split(":")
    if len(parts) == 1:
        return "", "", parts[0]
    if len(parts) == 2:
        return "", parts[0], parts[1]
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    raise InvalidArgument(f"invalid port specification: {raw!r} (put IPv6 addresses in [])")


def _has_range_field() -> bool:
    return any(f.name == "host_port_end" for f in records.fields(PortBinding))


def parse_publish(value: str) -> list[PortBinding]:
    """One ``-p`` value: a binding per container port (ranges expand)."""
    raw, _, proto = value.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto} (tcp and udp are supported)")
    host_ip, host_part, container_part = _split_spec(raw)
    if not container_part:
        raise InvalidArgument(f"no port specified: {value}<empty>")
    if host_ip:
        try:
            addr = ipaddress.ip_address(host_ip)
        except ValueError:
            raise InvalidArgument(f"invalid IP address: {host_ip}") from None
        if addr.version != 4:
            raise InvalidArgument(f"IPv6 host addresses are not supported: {host_ip}")
        host_ip = str(addr)
    c_first, c_last = _port_range(container_part, "containerPort", value)
    h_first = h_last = 0
    if host_part:
        h_first, h_last = _port_range(host_part, "hostPort", value)
    count = c_last - c_first
    if host_part and h_last - h_first != count:
        if count != 0:
            raise InvalidArgument(
                f"invalid ranges specified for container and host Ports: "
                f"{container_part} and {host_part}"
            )
        # one container port, a host range: any free port of the range (Docker's rule)
        if not _has_range_field():
            raise InvalidArgument(
                f"host port ranges for one container port are not supported: {value}"
            )
        binding = PortBinding(
            container_port=c_first, protocol=proto, host_ip=host_ip, host_port=h_first
        )
        binding.host_port_end = h_last
        return [binding]
    return [
        PortBinding(
            container_port=c_first + i,
            protocol=proto,
            host_ip=host_ip,
            host_port=h_first + i if host_part else 0,
        )
        for i in range(count + 1)
    ]


def parse_expose(value: str) -> list[str]:
    """``--expose 80`` / ``8000-8002/udp`` as Docker's ``"80/tcp"`` keys."""
    port, _, proto = value.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in PROTOCOLS:
        raise InvalidArgument(f"invalid proto: {proto}")
    first, last = _port_range(port, "range for exposed port", value)
    return [f"{p}/{proto}" for p in range(first, last + 1)]


# -- --add-host, --network, --dns ----------------------------------------------


def parse_add_host(value: str) -> str:
    """``host:ip`` (or ``host=ip``; ip may be ``host-gateway``), normalized to ``host:ip``."""
    sep = "=" if "=" in value and (":" not in value or value.index("=") < value.index(":")) else ":"
    host, found, ip = value.partition(sep)
    if not found or not host or not ip:
        raise InvalidArgument(f"bad format for add-host: {value!r}")
    if ip.startswith("[") and ip.endswith("]"):
        ip = ip[1:-1]
    if ip != "host-gateway":
        try:
            ip = str(ipaddress.ip_address(ip))
        except ValueError:
            raise InvalidArgument(f"invalid IP address in add-host: {ip!r}") from None
    return f"{host}:{ip}"


def parse_network_mode(value: str) -> str:
    """bridge | host | none | container:REF | a network name."""
    value = value.strip()
    if value in ("", "default"):
        return "bridge"
    if value.startswith("container:"):
        if not value[len("container:") :]:
            raise InvalidArgument(f"invalid container format container:<name|id>: {value}")
        return value
    if not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*", value):
        raise InvalidArgument(f"invalid network name: {value}")
    return value


def parse_dns(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidArgument(f"{value} is not an ip address") from None


def apply_network_args(spec: ContainerSpec, args: Any) -> None:
    """Fill the spec's network fields from ``run``/``create`` flags (an argparse Namespace).

    Reads ``network``, ``network_alias``, ``ip``, ``dns``, ``dns_search``,
    ``dns_option``, ``add_host``, ``publish``, ``publish_all`` and ``hostname`` when
    present, parses them, then checks Docker's conflicts (``validate_spec``).
    """

    def get(name: str, default: Any) -> Any:
        value = getattr(args, name, default)
        return default if value is None else value

    spec.network_mode = parse_network_mode(get("network", "bridge"))
    spec.network_aliases = list(get("network_alias", []))
    spec.ip_address = get("ip", None) or None
    spec.dns = [parse_dns(v) for v in get("dns", [])]
    spec.dns_search = list(get("dns_search", []))
    spec.dns_options = list(get("dns_option", []))
    spec.extra_hosts = [parse_add_host(v) for v in get("add_host", [])]
    spec.ports = [b for value in get("publish", []) for b in parse_publish(value)]
    spec.publish_all = bool(get("publish_all", False))
    if spec.network_mode == "host" and spec.ports:
        print(
            "WARNING: Published ports are discarded when using host network mode", file=sys.stderr
        )
        spec.ports = []
    validate_spec(spec)


def validate_spec(spec: ContainerSpec) -> None:
    """Docker's conflicts between the network mode and the other network flags."""
    mode = spec.network_mode
    if mode.startswith("container:"):
        conflicts = [
            (spec.hostname, "hostname and the network mode"),
            (spec.dns or spec.dns_search or spec.dns_options, "dns and the network mode"),
            (spec.extra_hosts, "custom host-to-IP mapping and the network mode"),
            (spec.ports or spec.publish_all, "port publishing and the container type network mode"),
            (spec.network_aliases or spec.ip_address, "networking options and the network mode"),
        ]
        for present, what in conflicts:
            if present:
                raise InvalidArgument(f"conflicting options: {what}")
    if mode in ("bridge", "host", "none"):
        if spec.network_aliases:
            raise InvalidArgument(
                "network-scoped alias is supported only for containers in user defined networks"
            )
        if spec.ip_address:
            raise InvalidArgument(
                "user specified IP address is supported on user defined networks only"
            )
    if spec.ip_address:
        try:
            ipaddress.IPv4Address(spec.ip_address)
        except ValueError:
            raise InvalidArgument(f"invalid IPv4 address: {spec.ip_address}") from None


# -- /etc/hosts and /etc/resolv.conf -------------------------------------------


@record
class ResolvConf:
    nameservers: list[str] = field(default_factory=list)
    search: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


def read_resolv(path: str) -> ResolvConf:
    """The host's resolver settings (systemd-resolved's stub is looked through)."""
    conf = _parse_resolv(path)
    stub = "/run/systemd/resolve/resolv.conf"
    if conf.nameservers == ["127.0.0.53"] and path == "/etc/resolv.conf" and os.path.exists(stub):
        conf = _parse_resolv(stub)
    return conf


def _parse_resolv(path: str) -> ResolvConf:
    conf = ResolvConf()
    try:
        text = open(path).read()
    except OSError:
        return conf
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if not words:
            continue
        if words[0] == "nameserver" and len(words) > 1:
            conf.nameservers.append(words[1])
        elif words[0] in ("search", "domain"):
            conf.search = words[1:]
        elif words[0] == "options":
            conf.options += words[1:]
    return conf


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%")[0]).is_loopback
    except ValueError:
        return False


def resolv_for(
    host: ResolvConf,
    spec: ContainerSpec,
    *,
    embedded_dns: str | None,
    host_mode: bool,
    default_dns: list[str],
) -> ResolvConf:
    """What the container's resolv.conf says, by Docker's rules."""
    search = host.search
    if spec.dns_search:
        search = [] if spec.dns_search == ["."] else list(spec.dns_search)
    options = list(spec.dns_options) if spec.dns_options else list(host.options)
    if embedded_dns:
        if not any(o.startswith("ndots:") for o in options):
            options = ["ndots:0", *options]
        return ResolvConf([embedded_dns], search, options)
    if spec.dns:
        return ResolvConf(list(spec.dns), search, options)
    if host_mode:
        return ResolvConf(list(host.nameservers), search, options)
    servers = [s for s in host.nameservers if not is_loopback(s) and ":" not in s]
    return ResolvConf(servers or list(default_dns or DEFAULT_DNS), search, options)


def resolv_text(conf: ResolvConf) -> str:
    lines = [f"nameserver {s}" for s in conf.nameservers]
    if conf.search:
        lines.append("search " + " ".join(conf.search))
    if conf.options:
        lines.append("options " + " ".join(conf.options))
    return "\n".join(lines) + "\n"


def hosts_text(
    hostname: str,
    domainname: str | None,
    addresses: list[str],
    extra_hosts: list[tuple[str, str]],
) -> str:
    """Docker's /etc/hosts: localhost lines, --add-host entries, then the container itself."""
    lines = [f"{ip}\t{name}\n" for name, ip in extra_hosts]
    names = f"{hostname}.{domainname} {hostname}" if domainname else hostname
    lines += [f"{ip}\t{names}\n" for ip in addresses]
    return _HOSTS_HEADER + "".join(lines)


def split_extra_hosts(values: list[str], gateway: str | None) -> list[tuple[str, str]]:
    """``host:ip`` values as pairs, ``host-gateway`` replaced by a host address."""
    pairs = []
    for value in values:
        host, _, ip = parse_add_host(value).partition(":")
        if ip == "host-gateway":
            if not gateway:
                raise InvalidArgument("unable to derive the IP value for host-gateway")
            ip = gateway
        pairs.append((host, ip))
    return pairs
