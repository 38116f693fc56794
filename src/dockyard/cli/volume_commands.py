"""``volume create|ls|inspect|rm|prune``: Docker's volume commands over VolumeManager.

Failures of these commands exit 1, as Docker's do (flag errors exit 125).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from dockyard.cli.main import UsageError
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.volumes.manager import Volume, VolumeManager

_LS_HEADERS = {
    "Name": "VOLUME NAME",
    "Driver": "DRIVER",
    "Scope": "SCOPE",
    "Mountpoint": "MOUNTPOINT",
    "Labels": "LABELS",
    "Links": "LINKS",
    "Size": "SIZE",
    "Availability": "AVAILABILITY",
    "Group": "GROUP",
    "Status": "STATUS",
}
_LS_DEFAULT = "table {{.Driver}}\t{{.Name}}"


def configure(command: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if command == "volume create":
        a("-d", "--driver", default="local")
        a("-o", "--opt", action="append", default=[])
        a("--label", action="append", default=[])
        a("--name", default="", help=argparse.SUPPRESS)
        a("volume", nargs="?", default="")
    elif command == "volume ls":
        a("-q", "--quiet", action="store_true")
        a("--format", default="")
        a("-f", "--filter", action="append", default=[])
    elif command == "volume inspect":
        a("-f", "--format", default="")
        a("volumes", nargs="+")
    elif command == "volume rm":
        a("-f", "--force", action="store_true")
        a("volumes", nargs="+")
    elif command == "volume prune":
        a("-a", "--all", action="store_true")
        a("-f", "--force", action="store_true")
        a("--filter", action="append", default=[])


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.volumes import VolumeManager

    manager = VolumeManager(ctx.paths, ctx.db)
    handler = {
        "volume create": _create,
        "volume ls": _ls,
        "volume inspect": _inspect,
        "volume rm": _rm,
        "volume prune": _prune,
    }[command]
    return handler(manager, args)


def _key_values(values: list[str], flag: str, *, label: bool) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        key, _, value = item.partition("=")
        if label and not key.strip():
            raise UsageError(
                f'invalid argument "{item}" for "--{flag}" flag: invalid label \'{item}\': '
                "empty name"
            )
        out[key] = value
    return out


def parse_filter_flags(values: list[str], flag: str = "--filter") -> dict[str, list[str]]:
    """``key=value`` filters, grouped by key (same key: any; different keys: all)."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise UsageError(
                f'invalid argument "{item}" for "{flag}" flag: bad format of filter '
                "(expected name=value)"
            )
        out.setdefault(key.strip().lower(), []).append(value)
    return out


def _create(vm: VolumeManager, args: argparse.Namespace) -> int:
    if args.volume and args.name:
        raise InvalidArgument(
            "conflicting options: cannot specify a volume-name through both --name and as a "
            "positional arg"
        )
    labels = _key_values(args.label, "label", label=True)
    options = _key_values(args.opt, "opt", label=False)
    volume = vm.create(args.volume or args.name or None, driver=args.driver, labels=labels,
                       options=options)  # fmt: skip
    print(volume.name)
    return 0


def _row(volume: Volume) -> dict[str, Any]:
    """One ``volume ls`` item: the fields of Docker's volume formatter context."""
    return {
        "Name": volume.name,
        "Driver": volume.driver,
        "Scope": "local",
        "Mountpoint": volume.mountpoint,
        "Labels": ",".join(f"{k}={v}" for k, v in sorted(volume.labels.items())),
        "Links": "N/A",
        "Size": "N/A",
        "Availability": "N/A",
        "Group": "N/A",
        "Status": "N/A",
        "_labels": dict(volume.labels),
    }


def _ls(vm: VolumeManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output

    volumes = vm.list(parse_filter_flags(args.filter, "-f, --filter"))
    quiet = "Name" if args.quiet and (not args.format or args.format == "table") else None
    rows = [_row(v) for v in volumes]
    sys.stdout.write(
        format_output(
            rows,
            args.format,
            _LS_DEFAULT,
            headers=_LS_HEADERS,
            quiet_field=quiet,
            context_type="*formatter.volumeContext",
        )  # fmt: skip
    )
    return 0


def _inspect(vm: VolumeManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import inspect_refs

    missing = inspect_refs(args.volumes, vm.inspect, args.format)
    if missing:
        raise DockyardError(f"get {missing[-1]}: no such volume", exit_code=1)
    return 0


def _rm(vm: VolumeManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import remove_each

    def remove(name: str) -> bool:
        vm.remove(name, force=args.force)
        return True

    return remove_each(args.volumes, remove)


def _prune(vm: VolumeManager, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import confirm, human_size

    filters = parse_filter_flags(args.filter)
    if args.all and "all" in filters:
        raise InvalidArgument("conflicting options: cannot specify both --all and --filter all=1")
    if not args.force:
        which = "all" if args.all else "anonymous"
        warning = (
            f"WARNING! This will remove {which} local volumes not used by at least one container."
        )
        if not confirm(warning):
            print()
            return 0
    removed, reclaimed = vm.prune(all=args.all, filters=filters)
    if removed:
        print("Deleted Volumes:")
        for name in removed:
            print(name)
        print()
    print(f"Total reclaimed space: {human_size(reclaimed, 4)}")
    return 0
