"""Compose commands that show things: ``ps``, ``ls``, ``images``, ``top``, ``port``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.compose import resources
from dockyard.compose.convert import L_CONFIG_FILES, L_PROJECT
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context

PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Name": "NAME",
    "Names": "NAMES",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "Service": "SERVICE",
    "Project": "PROJECT",
    "RunningFor": "CREATED",
    "CreatedAt": "CREATED AT",
    "Status": "STATUS",
    "State": "STATE",
    "Health": "HEALTH",
    "ExitCode": "EXIT CODE",
    "Ports": "PORTS",
}


def _ps(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.cli.container_commands import ps_row
    from dockyard.cli.formatting import format_output
    from dockyard.compose.commands import require, targets

    project = require(g)
    if ns.list_services:
        names = ns.services or project.enabled()
        containers = targets(ctx, project, list(ns.services))
        running = {resources.service_of(c) for c in containers if c.running or ns.all}
        for name in names:
            if name in running:
                print(name)
        return 0
    for name in ns.services:
        project.service(name)
    containers = resources.project_containers(  # every service's, profiles or not
        ctx, project.name, services=list(ns.services) or None, oneoff=None
    )
    statuses = set(ns.status)
    for f in ns.filter:
        key, _, value = f.partition("=")
        if key != "status":
            raise InvalidArgument(f"invalid filter '{key}'")
        statuses.add(value)
    if statuses:
        containers = [c for c in containers if c.state.status in statuses]
    elif not ns.all:
        containers = [c for c in containers if c.running]
    if ns.quiet:
        for c in containers:
            print(c.id if ns.no_trunc else c.id)
        return 0
    now = time.time()
    rows = []
    for c in containers:
        row: dict[str, Any] = ps_row(ctx, c, trunc=not ns.no_trunc, size=False, now=now)
        health = (c.state.health or {}).get("Status", "") if c.running else ""
        row.update(
            {
                "ID": c.id,
                "Name": c.name,
                "Image": c.image,
                "Service": resources.service_of(c),
                "Project": project.name,
                "Health": health,
                "ExitCode": c.state.exit_code if c.state.status == "exited" else 0,
            }
        )
        row["_labels"] = dict(c.spec.labels)
        rows.append(row)
    default = (
        "table {{.Name}}\t{{.Image}}\t{{.Command}}\t{{.Service}}\t{{.RunningFor}}\t"
        "{{.Status}}\t{{.Ports}}"
    )
    fmt = ns.format
    if fmt == "json":
        import json

        clean = [
            {k: v for k, v in r.items() if not k.startswith("_") and not callable(v)} for r in rows
        ]
        for item in clean:
            print(json.dumps(item))
        return 0
    sys.stdout.write(format_output(rows, fmt, default, headers=PS_HEADERS))
    return 0


def _ls(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    import json

    projects = resources.all_projects(ctx)
    rows = []
    for name in sorted(projects):
        if ns.filter:
            wanted = [f.partition("=")[2] for f in ns.filter if f.startswith("name=")]
            if wanted and not any(w in name for w in wanted):
                continue
        containers = projects[name]
        counts: dict[str, int] = {}
        for c in containers:
            counts[c.state.status] = counts.get(c.state.status, 0) + 1
        if not ns.all and not counts.get("running"):
            continue
        status = ", ".join(f"{k}({v})" for k, v in sorted(counts.items()))
        files = containers[0].spec.labels.get(L_CONFIG_FILES, "") if containers else ""
        rows.append({"Name": name, "Status": status, "ConfigFiles": files})
    if ns.quiet:
        for row in rows:
            print(row["Name"])
        return 0
    if ns.format == "json":
        print(json.dumps(rows))
        return 0
    from dockyard.cli.formatting import tabwriter

    table = [["NAME", "STATUS", "CONFIG FILES"]] + [
        [r["Name"], r["Status"], r["ConfigFiles"]] for r in rows
    ]
    sys.stdout.write(tabwriter(table))
    return 0


def _images(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    import json

    from dockyard.cli.formatting import human_size, tabwriter
    from dockyard.compose.commands import require, targets

    project = require(g)
    containers = targets(ctx, project, list(ns.services))
    rows = []
    for c in containers:
        try:
            image = ctx.images.get(c.image_id)
        except DockyardError:
            continue
        repo, tag = "<none>", "<none>"
        tags = image.repo_tags
        if tags:
            repo, _, tag = tags[0].rpartition(":")
        rows.append(
            {
                "ContainerName": c.name,
                "Repository": repo,
                "Tag": tag,
                "ID": image.id,
                "Size": image.size,
            }
        )
    if ns.quiet:
        for image_id in dict.fromkeys(r["ID"] for r in rows):
            print(image_id.removeprefix("sha256:")[:12])
        return 0
    if ns.format == "json":
        print(json.dumps(rows))
        return 0
    table = [["CONTAINER", "REPOSITORY", "TAG", "IMAGE ID", "SIZE"]] + [
        [r["ContainerName"], r["Repository"], r["Tag"], r["ID"].removeprefix("sha256:")[:12],
         human_size(r["Size"])]
        for r in rows
    ]  # fmt: skip
    sys.stdout.write(tabwriter(table))
    return 0


def _top(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.commands import require, targets
    from dockyard.compose.interactive import run_cli_command

    project = require(g)
    running = [c for c in targets(ctx, project, list(ns.services)) if c.running]
    for i, c in enumerate(running):
        if i:
            print()
        print(c.name)
        sys.stdout.flush()
        run_cli_command(ctx, "top", [c.id])
    return 0


def _port(ctx: Context, g: argparse.Namespace, ns: argparse.Namespace) -> int:
    from dockyard.compose.commands import require
    from dockyard.compose.interactive import pick_container

    project = require(g)
    container = pick_container(ctx, project, ns.service, ns.index)
    port = ns.private_port if "/" in ns.private_port else f"{ns.private_port}/{ns.protocol}"
    lines = resources.network_manager(ctx).port_lines(container.id, port)
    if not lines:
        raise DockyardError(f"no port {port} for container {container.name}")
    print(lines[0])
    return 0


HANDLERS = {"ps": _ps, "ls": _ls, "images": _images, "top": _top, "port": _port}


def project_of(labels: dict[str, str]) -> str:
    return labels.get(L_PROJECT, "")
