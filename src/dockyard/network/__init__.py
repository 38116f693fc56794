"""Container networking: bridge networks, port publishing, embedded DNS.

Contract for the engine (everything is imported lazily from here):

``NetworkManager(paths, db)`` (``manager.py`` + ``attach.py``)
    Networks: ``create(name, *, driver, subnet, gateway, ip_range, internal,
    attachable, labels, options, ipv6) -> NetworkRecord``, ``list()``, ``get(ref)``,
    ``inspect(ref) -> dict`` (Docker's JSON), ``remove(ref)``,
    ``prune(filters) -> list[str]``, ``connect(ref, container_id, *, name, spec,
    aliases, ip)``, ``disconnect(ref, container_id, *, force)``.

    Containers: ``prepare(container_id, name, spec, image_config) -> NetworkSetup``
    at start, before runc (creates the netns, veths, addresses, port rules, DNS,
    and writes hosts/hostname/resolv.conf into ``paths.container_dir(id)``);
    ``teardown(container_id)`` at stop (idempotent, never raises);
    ``forget(container_id)`` when the container is removed;
    ``settings(container_id, spec, image_config) -> dict`` (inspect's
    NetworkSettings, running or not); ``port_lines(container_id, port=None)``;
    ``cleanup_stale(is_running) -> list[str]``; ``destroy_all()`` (removes every
    kernel object of the store: for test teardown and uninstall).

``gc.sweep_orphans() -> list[str]``: removes the kernel objects of stores whose
database is gone (a deleted test root); also run whenever a new store is set up.

The embedded DNS server (``dns.py``, one process per store) listens on the gateway
address, port 53, of every user-defined network with a running container (told by
``prepare``/``connect``/``teardown``/``disconnect``/``remove``); it exits when none is left.

    Call these outside a database transaction: they take the store's network
    lock, then short transactions of their own.

``NetworkSetup(netns_path, extra_mounts, settings, hostname)``: ``netns_path``
is None in host mode (share the host's), another container's netns for
``container:NAME``; ``extra_mounts`` are OCI bind mounts of /etc/resolv.conf,
/etc/hostname and /etc/hosts.

Flag helpers (``options.py``): ``apply_network_args(spec, args)`` (all of them, from
the run/create Namespace), ``parse_publish(value) -> list[PortBinding]``,
``parse_expose``, ``parse_add_host(value) -> "host:ip"``,
``parse_network_mode(value)``, ``parse_dns(value)``, ``validate_spec(spec)``.

Kernel objects carry a ``dy`` prefix and (outside the default root) a hash of
the root: bridges ``dyd0``/``dyd<hash>`` (default) and ``dy-<12 hex>``, veths
``dy<8 hex>``, nftables table ``ip dockyard[_<hash>]``, iptables chain
``DOCKYARD-FORWARD`` (``DY-<HASH>-FORWARD`` in other stores); netns files under ``RUNROOT/netns``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from dockyard.network.attach import NetworkSetup
    from dockyard.network.manager import NetworkManager
    from dockyard.network.options import (
        apply_network_args,
        parse_add_host,
        parse_dns,
        parse_expose,
        parse_network_mode,
        parse_publish,
        validate_spec,
    )

__all__ = [
    "NetworkManager",
    "apply_network_args",
    "ports_text",
    "NetworkSetup",
    "parse_add_host",
    "parse_dns",
    "parse_expose",
    "parse_network_mode",
    "parse_publish",
    "validate_spec",
]

_WHERE = {
    "NetworkManager": "manager",
    "NetworkSetup": "attach",
    "parse_add_host": "options",
    "parse_dns": "options",
    "parse_expose": "options",
    "parse_network_mode": "options",
    "parse_publish": "options",
    "validate_spec": "options",
    "apply_network_args": "options",
}


def ports_text(ctx: Any, container: Any) -> str:
    """The PORTS column of ``ps`` for an engine container (empty unless it runs)."""
    import sqlite3

    from dockyard.network import ports, store

    config = getattr(container, "config", None) or {}
    exposed = ports.exposed_ports(container.spec, config)
    try:  # straight from the store: no manager, no kernel modules for a listing
        published = store.ports(ctx.db.conn, container.id)
    except sqlite3.OperationalError:  # no network tables yet
        published = []
    return ports.display_ports(published, exposed)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f"dockyard.network.{_WHERE[name]}"), name)
    raise AttributeError(name)
