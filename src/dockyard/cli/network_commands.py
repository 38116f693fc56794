"""``network create|ls|inspect|rm|prune|connect|disconnect`` and ``port``.

Failures exit 1, as Docker's do (flag errors exit 125, see ``main``).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound
from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.containers.spec import ContainerSpec
    from dockyard.network.manager import NetworkManager
    from dockyard.network.store import NetworkRecord

_LS_HEADERS = {
    "ID": "NETWORK ID",
    "Name": "NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "IPv6": "IPV6",
    "IPv4": "IPV4",
    "Internal": "INTERNAL",
    "Labels": "LABELS",
    "CreatedAt": "CREATED AT",
}
_LS_DEFAULT = "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}"
_LS_FILTERS = {"driver", "id", "label", "name", "scope", "type", "dangling"}


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command == "network create":
        a("-d", "--driver", default="bridge")
        a("--subnet", action="append", default=[])
        a("--gateway", action="append", default=[])
        a("--ip-range", action="append", default=[])
        a("--internal", action="store_true")
        a("--attachable", action="store_true")
        a("--label", action="append", default=[])
        a("-o", "--opt", action="append", default=[])
        a("--ipv6", action="store_true")
        a("--ipv4", default="true")
        a("--ipam-driver", default="default")
        a("--ipam-opt", action="append", default=[])
        a("--aux-address", action="append", default=[])
        a("--scope", default="")
        a("--ingress", action="store_true")
        a("--config-only", action="store_true")
        a("--config-from", default="")
        a("name")
    elif command == "network ls":
        a("-q", "--quiet", action="store_true")
        a("-f", "--filter", action="append", default=[])
        a("--format", default="")
        a("--no-trunc", action="store_true")
    elif command == "network inspect":
        a("-f", "--format", default="")
        a("-v", "--verbose", action="store_true")
        a("networks", nargs="+")
    elif command == "network rm":
        a("-f", "--force", action="store_true")
        a("networks", nargs="+")
    elif command == "network prune":
        a("-f", "--force", action="store_true")
        a("--filter", action="append", default=[])
    elif command == "network connect":
        a("--alias", action="append", default=[])
        a("--ip", default="")
        a("--ip6", default="")
        a("--link", action="append", default=[])
        a("--link-local-ip", action="append", default=[])
        a("--driver-opt", action="append", default=[])
        a("network")
        a("container")
    elif command == "network disconnect":
        a("-f", "--force", action="store_true")
        a("network")
        a("container")
    elif command == "port":
        a("container")
        a("port", nargs="?")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    mgr = network_manager(ctx)
    handler = {
        "network create": _create,
        "network ls": _ls,
        "network inspect": _inspect,
        "network rm": _rm,
        "network prune": _prune,
        "network connect": _connect,
        "network disconnect": _disconnect,
        "port": _port,
    }[command]
    return handler(ctx, mgr, args)


def network_manager(ctx: Context) -> NetworkManager:
    from dockyard.network.manager import NetworkManager

    return NetworkManager(ctx.paths, ctx.db)


def network_inspect_data(ctx: Context, ref: str) -> dict[str, Any] | None:
    """For ``dockyard inspect``: the network's document, None when there is no such network."""
    try:
        return network_manager(ctx).inspect(ref)
    except NotFound:
        return None


# -- helpers -------------------------------------------------------------------------


def _key_values(values: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if not key.strip():
            raise InvalidArgument(f"invalid label '{item}': empty name")
        out[key] = value
    return out


def _filters(values: list[str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument(f"bad format of filter (expected name=value): {item}")
        out.setdefault(key.strip().lower(), []).append(value)
    return out


@record
class _Container:
    id: str
    name: str
    spec: ContainerSpec


def _container(ctx: Context, mgr: NetworkManager, ref: str) -> _Container:
    """The engine's container, else one known only to the network records (tests)."""
    from dockyard.containers.spec import ContainerSpec
    from dockyard.network import store

    try:
        found = ctx.containers.get(ref)
        return _Container(found.id, found.name, found.spec)
    except (NotFound, ImportError, AttributeError):
        pass
    cid = mgr._resolve_container(ref)
    nc = store.net_container(mgr.db.conn, cid)
    mode = nc.mode if nc is not None else "bridge"
    return _Container(cid, nc.name if nc else cid[:12], ContainerSpec(image="", network_mode=mode))


# -- commands ------------------------------------------------------------------------


def _create(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    if len(args.subnet) > 1 or len(args.gateway) > 1 or len(args.ip_range) > 1:
        raise InvalidArgument("only one IPv4 --subnet, --gateway and --ip-range are supported")
    if args.ingress or args.config_only or args.config_from or args.scope not in ("", "local"):
        raise InvalidArgument("swarm and config-only networks are not supported")
    if args.ipam_driver != "default":
        raise InvalidArgument(f"IPAM driver {args.ipam_driver!r} is not supported")
    net = mgr.create(
        args.name,
        driver=args.driver,
        subnet=args.subnet[0] if args.subnet else None,
        gateway=args.gateway[0] if args.gateway else None,
        ip_range=args.ip_range[0] if args.ip_range else None,
        internal=args.internal,
        attachable=args.attachable,
        labels=_key_values(args.label),
        options=_key_values(args.opt),
        ipv6=args.ipv6,
    )
    print(net.id)
    return 0


def _created_at(created: str) -> str:
    """Go's time.Time String(): ``2024-01-02 03:04:05.123456789 +0000 UTC``."""
    date, _, clock = created.rstrip("Z").partition("T")
    return f"{date} {clock} +0000 UTC"


def _matches(mgr: NetworkManager, net: NetworkRecord, filters: dict[str, list[str]]) -> bool:
    from dockyard.network import store
    from dockyard.network.manager import match_labels

    unknown = set(filters) - _LS_FILTERS - {"label!"}
    if unknown:
        raise InvalidArgument(f"invalid filter '{sorted(unknown)[0]}'")

    def any_of(key: str, test: Any) -> bool:
        return key not in filters or any(test(v) for v in filters[key])

    def search(pattern: str, text: str) -> bool:
        try:
            return re.search(pattern, text) is not None
        except re.error:
            return pattern in text

    in_use = any(e.ip for e in store.endpoints(mgr.db.conn, network_id=net.id))
    for value in filters.get("type", []):
        if value not in ("custom", "builtin"):
            raise InvalidArgument(f"invalid filter: 'type'='{value}'")
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"invalid filter 'dangling={value}'")
    return (
        any_of("driver", lambda v: v == net.driver)
        and any_of("id", lambda v: net.id.startswith(v) or search(v, net.id))
        and any_of("name", lambda v: search(v, net.name))
        and any_of("scope", lambda v: v == "local")
        and any_of("type", lambda v: (v == "builtin") == net.builtin)
        and any_of(
            "dangling", lambda v: (v.lower() in ("true", "1")) == (not in_use and not net.builtin)
        )
        and match_labels(net.labels, filters.get("label", []))
        and match_labels(net.labels, filters.get("label!", []), negate=True)
    )


def _ls(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output

    filters = _filters(args.filter)
    nets = sorted((n for n in mgr.list() if _matches(mgr, n, filters)), key=lambda n: n.name)
    rows = [
        {
            "ID": n.id if args.no_trunc else n.id[:12],
            "Name": n.name,
            "Driver": n.driver,
            "Scope": "local",
            "IPv6": "false",
            "IPv4": "true",
            "Internal": str(n.internal).lower(),
            "Labels": ",".join(f"{k}={v}" for k, v in sorted(n.labels.items())),
            "CreatedAt": _created_at(n.created),
            "_labels": dict(n.labels),
        }
        for n in nets
    ]
    sys.stdout.write(
        format_output(
            rows,
            args.format,
            _LS_DEFAULT,
            headers=_LS_HEADERS,
            quiet_field="ID" if args.quiet else None,
            context_type="*formatter.networkContext",
        )
    )
    return 0


def _inspect(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import inspect_refs

    missing = inspect_refs(args.networks, mgr.inspect, args.format)
    if missing:
        raise DockyardError(f"No such network: {missing[-1]}", exit_code=1)
    return 0


def _rm(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import remove_each

    def remove(ref: str) -> bool:
        try:
            mgr.remove(ref)
        except NotFound:
            if args.force:
                return False  # -f: a missing network is no error
            raise
        return True

    return remove_each(args.networks, remove)


def _prune(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    ctx.containers.release_stale_networks()
    filters = _filters(args.filter)
    for key in filters:
        if key not in ("until", "label", "label!"):
            raise InvalidArgument(f"invalid filter '{key}'")
    from dockyard.cli.formatting import confirm

    warning = "WARNING! This will remove all custom networks not used by at least one container."
    if not args.force and not confirm(warning):
        return 0
    removed = mgr.prune(filters)
    if removed:
        print("Deleted Networks:\n" + "".join(f"{n}\n" for n in removed))
    return 0


def _connect(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    if args.ip6 or args.link or args.link_local_ip:
        raise InvalidArgument("--ip6, --link and --link-local-ip are not supported")
    mgr.get(args.network)  # Docker reports a missing network first
    c = _container(ctx, mgr, args.container)
    mgr.connect(
        args.network, c.id, name=c.name, spec=c.spec, aliases=args.alias, ip=args.ip or None
    )
    return 0


def _disconnect(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    mgr.get(args.network)
    c = _container(ctx, mgr, args.container)
    mgr.disconnect(args.network, c.id, force=args.force)
    return 0


def _port(ctx: Context, mgr: NetworkManager, args: argparse.Namespace) -> int:
    c = _container(ctx, mgr, args.container)
    if args.port:
        port, _, proto = args.port.partition("/")
        key = f"{port}/{proto or 'tcp'}"
        lines = mgr.port_lines(c.id, key)
        if not lines:
            raise DockyardError(
                f"No public port '{key}' published for {args.container}", exit_code=1
            )
    else:
        lines = mgr.port_lines(c.id)
    for line in lines:
        print(line)
    return 0
