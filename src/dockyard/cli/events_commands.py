"""``events``: the store's event log, past and live, printed as Docker prints it."""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context

_FILTERS = ("container", "event", "image", "label", "network", "type", "volume")


def configure(command: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("--since")
    p.add_argument("--until")
    p.add_argument("-f", "--filter", action="append", default=[])
    p.add_argument("--format")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    from dockyard import events
    from dockyard.images.prune import parse_until

    filters: dict[str, list[str]] = {}
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep or key not in _FILTERS:
            raise InvalidArgument(f"invalid filter '{item}'")
        filters.setdefault(key, []).append(value)
    since = int(parse_until(args.since) * 1e9) if args.since else None
    until = int(parse_until(args.until) * 1e9) if args.until else None
    names = _container_names(ctx) if "container" in filters else {}
    render = _renderer(args.format)
    ctx.paths.ensure()
    try:
        if since is not None:
            for event in events.read(ctx.paths.root, since, until):
                if _matches(event, filters, names):
                    print(render(event), flush=True)
        if until is None or until > time.time_ns():
            for event in events.follow(ctx.paths.root, until):
                if _matches(event, filters, names):
                    print(render(event), flush=True)
    except KeyboardInterrupt:
        return 0
    return 0


def _container_names(ctx: Context) -> dict[str, str]:
    try:
        return {r["id"]: r["name"] for r in ctx.db.query("SELECT id, name FROM containers")}
    except Exception:  # noqa: BLE001 - an empty store has no table yet
        return {}


def _renderer(fmt: str | None) -> Any:
    if not fmt:
        return _text
    if fmt == "json" or fmt == "{{json .}}":
        import json

        return lambda event: json.dumps(event, separators=(",", ":"))
    from dockyard.cli.gotemplate import compile as compile_template

    template = compile_template(fmt)
    return template.execute


def _text(event: dict[str, Any]) -> str:
    """``2024-01-02T03:04:05.123456789Z container start ID (image=busybox, name=web)``."""
    nanos = int(event["timeNano"])
    seconds, frac = divmod(nanos, 1_000_000_000)
    local = time.localtime(seconds)
    offset = local.tm_gmtoff or 0
    zone = (
        "Z"
        if offset == 0
        else f"{'+' if offset > 0 else '-'}{abs(offset) // 3600:02d}:{abs(offset) % 3600 // 60:02d}"
    )
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", local) + f".{frac:09d}{zone}"
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(attributes.items()))
    line = f"{stamp} {event['Type']} {event['Action']} {actor.get('ID', '')}"
    return f"{line} ({shown})" if shown else line


def _matches(event: dict[str, Any], filters: dict[str, list[str]], names: dict[str, str]) -> bool:
    actor = event.get("Actor") or {}
    attributes = actor.get("Attributes") or {}
    kind = event.get("Type", "")
    actor_id = str(actor.get("ID", ""))
    for key, values in filters.items():
        if key == "type" and kind not in values:
            return False
        if key == "event" and event.get("Action") not in values:
            return False
        if key == "container":
            ok = kind == "container" and any(
                actor_id.startswith(v) or attributes.get("name") == v or names.get(actor_id) == v
                for v in values
            )
            if not ok:
                return False
        if key == "image":
            image = attributes.get("image") if kind == "container" else attributes.get("name")
            if not any(v in (image, actor_id) for v in values):
                return False
        if key in ("network", "volume"):
            if kind != key or not any(v in (actor_id, attributes.get("name")) for v in values):
                return False
        if key == "label":
            for v in values:
                k, sep, want = v.partition("=")
                if k not in attributes or (sep and attributes[k] != want):
                    return False
    return True
