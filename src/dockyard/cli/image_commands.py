"""Image commands: images, image inspect, image prune, import, load, save, tag, rmi,
history and commit -- flags, output and errors as the Docker CLI has them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument, NotFound

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.images.store import Image


# default-true boolean flags that accept Go's ``--flag=false`` form, per command
_GO_BOOLS = {
    "history": {"-H": "human", "--human": "human"},
    "commit": {"-p": "pause", "--pause": "pause"},
}


def preprocess(command: str, parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    """Rewrite ``-H=false`` / ``--pause=false`` into the hidden ``--no-<flag>`` options.

    argparse cannot take ``=value`` on a flag without making ``-H IMAGE`` eat the image.
    """
    flags = _GO_BOOLS.get(command)
    if not flags:
        return args
    rewritten: list[str] = []
    done = False
    for arg in args:
        option, eq, value = arg.partition("=")
        if done or not eq or option not in flags:
            done = done or arg == "--"
            rewritten.append(arg)
            continue
        lowered = value.lower()
        if lowered in ("false", "f", "0"):
            rewritten.append(f"--no-{flags[option]}")
        elif lowered in ("true", "t", "1"):
            rewritten.append(option)
        else:
            raise InvalidArgument(
                f'invalid argument "{value}" for "{option}" flag: strconv.ParseBool:'
                f' parsing "{value}": invalid syntax'
            )
    return rewritten


def _hidden_negation(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument(f"--no-{dest}", dest=dest, action="store_false", help=argparse.SUPPRESS)


def configure(command: str, parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    if command == "images":
        add("repository", nargs="?")
        add("-a", "--all", action="store_true")
        add("-q", "--quiet", action="store_true")
        add("--digests", action="store_true")
        add("--no-trunc", action="store_true")
        add("-f", "--filter", action="append", default=[])
        add("--format")
    elif command == "image inspect":
        add("images", nargs="+")
        add("-f", "--format")
        add("--platform")
    elif command == "image prune":
        add("-a", "--all", action="store_true")
        add("-f", "--force", action="store_true")
        add("--filter", action="append", default=[])
    elif command == "import":
        add("file")
        add("repository", nargs="?")
        add("-c", "--change", action="append", default=[])
        add("-m", "--message", default="")
        add("--platform")
    elif command == "load":
        add("-i", "--input")
        add("-q", "--quiet", action="store_true")
        add("--platform")
    elif command == "save":
        add("images", nargs="+")
        add("-o", "--output")
        add("--platform")
    elif command == "tag":
        add("source")
        add("target")
    elif command == "rmi":
        add("images", nargs="+")
        add("-f", "--force", action="store_true")
        add("--no-prune", action="store_true")
    elif command == "history":
        add("image")
        add("-H", "--human", action="store_true", default=True)
        add("--no-trunc", action="store_true")
        add("-q", "--quiet", action="store_true")
        add("--format")
        _hidden_negation(parser, "human")
    elif command == "commit":
        add("container")
        add("repository", nargs="?")
        add("-a", "--author", default="")
        add("-m", "--message", default="")
        add("-c", "--change", action="append", default=[])
        add("-p", "--pause", action="store_true", default=True)
        _hidden_negation(parser, "pause")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    handler = _HANDLERS[command]
    return handler(ctx, args)


# -- helpers ------------------------------------------------------------------------


def _filters(values: list[str], allowed: tuple[str, ...]) -> dict[str, list[str]]:
    """``--filter key=value`` flags as Docker's filters.Args (``label!=`` kept apart)."""
    out: dict[str, list[str]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidArgument("bad format of filter (expected name=value)")
        key = key.strip().lower()
        if key.endswith("!") and key[:-1] == "label":
            pass
        elif key not in allowed:
            raise InvalidArgument(f"invalid filter '{key}'")
        out.setdefault(key, []).append(value)
    return out


def _ellipsis(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _local_time(ts: float, fmt: str) -> str:
    return time.strftime(fmt, time.localtime(ts))


def _created_at(ts: float) -> str:
    """Go's time.Time.String() for a Unix time: ``2024-01-02 03:04:05 +0000 UTC``."""
    return _local_time(ts, "%Y-%m-%d %H:%M:%S %z %Z")


def _rfc3339_local(ts: float) -> str:
    text = _local_time(ts, "%Y-%m-%dT%H:%M:%S%z")
    offset = text[-5:]
    return text[:-5] + ("Z" if offset == "+0000" else f"{offset[:3]}:{offset[3:]}")


def _not_found_name(ref: str) -> str:
    from dockyard.images import reference

    try:
        return reference.parse(ref).with_default_tag().familiar()
    except InvalidArgument:
        return ref


# -- images ---------------------------------------------------------------------------

IMAGES_HEADERS = {
    "ID": "IMAGE ID",
    "Repository": "REPOSITORY",
    "Tag": "TAG",
    "Digest": "DIGEST",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "Size": "SIZE",
    "Containers": "CONTAINERS",
    "SharedSize": "SHARED SIZE",
    "UniqueSize": "UNIQUE SIZE",
    "VirtualSize": "VIRTUAL SIZE",
}


def _images(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output, human_size, time_ago
    from dockyard.images import reference
    from dockyard.images.prune import labels_match, rfc3339_ts
    from dockyard.images.views import image_rows

    filters = _filters(args.filter, ("dangling", "label", "before", "since", "reference", "until"))
    if args.repository:
        filters.setdefault("reference", []).append(args.repository)
    dangling_only = False
    for value in filters.get("dangling", []):
        if value.lower() not in ("true", "false", "1", "0"):
            raise InvalidArgument(f"Invalid filter 'dangling={value}'")
        dangling_only = value.lower() in ("true", "1")
    images = ctx.images.list()
    parents = {i.parent for i in images if i.parent}
    bounds: dict[str, float] = {}
    for key in ("before", "since"):
        for value in filters.get(key, []):
            bounds[key] = rfc3339_ts(ctx.images.resolve(value).created)
    until = None
    if filters.get("until"):
        from dockyard.images.prune import parse_until

        until = min(parse_until(v) for v in filters["until"])
    now = time.time()
    rows: list[dict[str, Any]] = []
    for image in images:
        if dangling_only and image.id in parents:
            continue
        created = rfc3339_ts(image.created)
        if "before" in bounds and created >= bounds["before"]:
            continue
        if "since" in bounds and created <= bounds["since"]:
            continue
        if until is not None and created > until:
            continue
        if not labels_match(image.container_config.get("Labels") or {}, filters):
            continue
        tags, digests = image.tags, image.repo_digests
        if "reference" in filters:
            patterns = filters["reference"]
            tags = [
                t for t in tags if any(reference.match(p, reference.parse(t)) for p in patterns)
            ]
            digests = [
                d for d in digests if any(reference.match(p, reference.parse(d)) for p in patterns)
            ]
        if not tags and not digests:
            if not (args.all or image.id not in parents):
                continue
            if "dangling" in filters and not dangling_only:
                continue
            if "reference" in filters:
                continue
        elif dangling_only and tags:
            continue
        base = {
            "ID": image.id if args.no_trunc else image.short_id,
            "CreatedSince": time_ago(created, now),
            "CreatedAt": _created_at(created),
            "Size": human_size(image.size),
            "VirtualSize": human_size(image.size),
            "SharedSize": "N/A",
            "UniqueSize": "N/A",
            "Containers": "N/A",
        }
        for repo, tag, digest in image_rows(tags, digests, args.digests):
            rows.append({**base, "Repository": repo, "Tag": tag, "Digest": digest})
    default = "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    if args.digests:
        default = (
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
        )
    sys.stdout.write(
        format_output(
            rows,
            args.format,
            default,
            headers=IMAGES_HEADERS,
            quiet_field="ID" if args.quiet else None,
            context_type="*formatter.imageContext",
        )
    )
    return 0


# -- image inspect ------------------------------------------------------------------------


def image_inspect_data(ctx: Context, image: Image) -> dict[str, Any]:
    """The ``docker image inspect`` object for one image."""
    from dockyard.images.views import inspect_data

    return inspect_data(ctx.images, image)


def _inspect(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import inspect_refs

    missing = inspect_refs(
        args.images, lambda ref: image_inspect_data(ctx, ctx.images.resolve(ref)), args.format
    )
    if missing:
        sys.stdout.flush()
        for ref in missing[:-1]:
            print(f"Error: No such image: {ref}", file=sys.stderr)
        raise NotFound(f"No such image: {missing[-1]}", exit_code=1)
    return 0


# -- prune ----------------------------------------------------------------------------------


def _prune(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import confirm, human_size

    filters = _filters(args.filter, ("until", "label", "dangling"))
    if not args.force:
        warning = (
            "WARNING! This will remove all images without at least one container associated to them."
            if args.all
            else "WARNING! This will remove all dangling images."
        )
        if not confirm(warning):
            return 0
    records, reclaimed = ctx.images.prune(all=args.all, filters=filters)
    if records:
        lines = ["Deleted Images:"]
        lines += [f"{kind.lower()}: {value}" for kind, value in records]
        print("\n".join(lines) + "\n")
    print(f"Total reclaimed space: {human_size(reclaimed, 4)}")
    return 0


# -- import / load / save ---------------------------------------------------------------------


def _import(ctx: Context, args: argparse.Namespace) -> int:
    source = args.file
    if source == "-":
        image = ctx.images.import_tar(sys.stdin.buffer, args.change, args.message, args.repository)
    elif source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(source) as response:  # noqa: S310 - the user's URL
                image = ctx.images.import_tar(
                    response, args.change, args.message, args.repository, source=source
                )
        except urllib.error.URLError as err:
            raise DockyardError(f"error downloading {source}: {err.reason}") from None
    else:
        try:
            handle = open(source, "rb")
        except FileNotFoundError:
            raise DockyardError(f"open {source}: no such file or directory") from None
        except IsADirectoryError:
            raise DockyardError(f"read {source}: is a directory") from None
        with handle:
            image = ctx.images.import_tar(handle, args.change, args.message, args.repository)
    print(image.id)
    return 0


def _load(ctx: Context, args: argparse.Namespace) -> int:
    if args.input:
        try:
            handle = open(args.input, "rb")
        except FileNotFoundError:
            raise DockyardError(f"open {args.input}: no such file or directory") from None
        with handle:
            messages = ctx.images.load(handle)
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise DockyardError("requested load from stdin, but stdin is empty")
        messages = ctx.images.load(sys.stdin.buffer)
    for line in messages:
        print(line)
    return 0


def _save(ctx: Context, args: argparse.Namespace) -> int:
    if not args.output:
        if sys.stdout.isatty():
            raise DockyardError(
                "cowardly refusing to save to a terminal. Use the -o flag or redirect"
            )
        sys.stdout.flush()
        ctx.images.save(args.images, sys.stdout.buffer)
        return 0
    import tempfile

    target = os.path.abspath(args.output)
    directory = os.path.dirname(target)
    if not os.path.isdir(directory):
        raise DockyardError(
            f"failed to save image: invalid output path: directory {directory!r} does not exist"
        )
    fd, tmp = tempfile.mkstemp(prefix=".docker_temp_", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            ctx.images.save(args.images, out)
        os.chmod(tmp, 0o644)
        os.rename(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return 0


# -- tag / rmi / history ------------------------------------------------------------------------


def _tag(ctx: Context, args: argparse.Namespace) -> int:
    try:
        ctx.images.tag(args.source, args.target)
    except NotFound:
        raise NotFound(f"No such image: {_not_found_name(args.source)}") from None
    return 0


def _rmi(ctx: Context, args: argparse.Namespace) -> int:
    errors: list[str] = []
    for ref in args.images:
        try:
            records = ctx.images.remove(ref, force=args.force, prune=not args.no_prune)
        except DockyardError as err:
            errors.append(str(err))
            continue
        for kind, value in records:
            print(f"{kind}: {value}")
    if errors:
        sys.stdout.flush()
        for message in errors:
            print(f"Error response from daemon: {message}", file=sys.stderr)
        return 1
    return 0


HISTORY_HEADERS = {
    "ID": "IMAGE",
    "CreatedSince": "CREATED",
    "CreatedAt": "CREATED AT",
    "CreatedBy": "CREATED BY",
    "Size": "SIZE",
    "Comment": "COMMENT",
}


def _history(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.cli.formatting import format_output, human_size, time_ago
    from dockyard.images.prune import rfc3339_ts

    try:
        entries = ctx.images.history(args.image)
    except NotFound:
        raise NotFound(f"No such image: {_not_found_name(args.image)}") from None
    now = time.time()
    rows = []
    for entry in entries:
        created = rfc3339_ts(entry.created)
        created_by = entry.created_by.replace("\t", " ")
        image_id = entry.id
        if image_id != "<missing>" and not args.no_trunc:
            image_id = image_id.removeprefix("sha256:")[:12]
        rows.append(
            {
                "ID": image_id,
                "CreatedAt": _rfc3339_local(created),
                "CreatedSince": time_ago(created, now) if args.human else _rfc3339_local(created),
                "CreatedBy": created_by if args.no_trunc else _ellipsis(created_by, 45),
                "Size": human_size(entry.size) if args.human else str(entry.size),
                "Comment": entry.comment,
            }
        )
    default = "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    sys.stdout.write(
        format_output(
            rows,
            args.format,
            default,
            headers=HISTORY_HEADERS,
            quiet_field="ID" if args.quiet else None,
            context_type="*formatter.historyContext",
        )
    )
    return 0


# -- commit -------------------------------------------------------------------------------------


def _commit(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.images import reference

    if args.repository:
        parsed = reference.parse(args.repository)
        if parsed.digest:
            raise InvalidArgument("refusing to create a tag with a digest reference")
    container = ctx.containers.get(args.container)
    try:
        base: Image | None = ctx.images.get(container.image_id)
    except NotFound:
        base = None
    config = getattr(container, "config", None)
    paused = False
    if args.pause and getattr(container, "running", False):
        status = getattr(getattr(container, "state", None), "status", "")
        if status == "running":
            ctx.containers.pause(container)
            paused = True
    try:
        image = ctx.images.commit(
            container.id,
            base=base,
            changes=args.change,
            author=args.author,
            message=args.message,
            tags=[args.repository] if args.repository else [],
            container_config=config if isinstance(config, dict) else None,
        )
    finally:
        if paused:
            ctx.containers.unpause(container)
    print(image.id)
    return 0


_HANDLERS = {
    "images": _images,
    "image inspect": _inspect,
    "image prune": _prune,
    "import": _import,
    "load": _load,
    "save": _save,
    "tag": _tag,
    "rmi": _rmi,
    "history": _history,
    "commit": _commit,
}
