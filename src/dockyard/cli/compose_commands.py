"""``dockyard compose``: global flags (-f, -p, --project-directory, --env-file,
--profile), then one subcommand, as ``docker compose`` (Compose v2) has them.

One ``compose`` entry in the command table takes every word after it: the
global flags come before the subcommand, so they are parsed here.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.compose.model import Project

SUBCOMMANDS = (
    "build config create down exec images kill logs ls pause port ps pull push "
    "restart rm run start stop top unpause up version"
).split()


def configure(command: str, p: argparse.ArgumentParser) -> None:
    p.add_argument("argv", nargs=argparse.REMAINDER)


def preprocess(command: str, parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    return ["--", *args]  # every word is ours, flags included


def _parser(prog: str) -> argparse.ArgumentParser:
    from dockyard.cli.main import ArgumentParser

    parser = ArgumentParser(prog=prog, add_help=False)
    parser.add_argument("-h", "--help", action="help", help=argparse.SUPPRESS)
    return parser


def _global_parser() -> argparse.ArgumentParser:
    p = _parser("dockyard compose")
    a = p.add_argument
    a("-f", "--file", action="append", default=[])
    a("-p", "--project-name")
    a("--project-directory")
    a("--env-file", action="append", default=[])
    a("--profile", action="append", default=[])
    a("--ansi", default="auto")
    a("--progress")
    a("--parallel", type=int)
    a("--compatibility", action="store_true")
    a("--dry-run", action="store_true")
    a("-v", "--version", action="store_true")
    return p


_GLOBAL_WITH_VALUE = {
    "-f", "--file", "-p", "--project-name", "--project-directory", "--env-file", "--profile",
    "--ansi", "--progress", "--parallel",
}  # fmt: skip


def split_globals(argv: list[str]) -> tuple[list[str], list[str]]:
    """The global flags before the subcommand, and the subcommand with its arguments."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        if argv[i] in _GLOBAL_WITH_VALUE:
            i += 1
        i += 1
    return argv[:i], argv[i:]


def _services(a: Any) -> None:
    a("services", nargs="*")


def _configure_sub(sub: str, p: argparse.ArgumentParser) -> None:
    a = p.add_argument
    if sub in ("up", "create"):
        a("--build", action="store_true")
        a("--no-build", action="store_true")
        a("--force-recreate", action="store_true")
        a("--no-recreate", action="store_true")
        a("-V", "--renew-anon-volumes", action="store_true")
        a("--remove-orphans", action="store_true")
        a("--scale", action="append", default=[])
        a("--pull", choices=["always", "missing", "never", "build"])
        a("--quiet-pull", action="store_true")
        a("-y", "--yes", action="store_true")
        if sub == "up":
            a("-d", "--detach", action="store_true")
            a("--no-deps", action="store_true")
            a("--no-start", action="store_true")
            a("--wait", action="store_true")
            a("--wait-timeout", type=int)
            a("--abort-on-container-exit", action="store_true")
            a("--abort-on-container-failure", action="store_true")
            a("--exit-code-from")
            a("-t", "--timeout", type=int)
            a("--no-color", action="store_true")
            a("--no-log-prefix", action="store_true")
            a("--attach", action="append", default=[])
            a("--no-attach", action="append", default=[])
            a("--attach-dependencies", action="store_true")
            a("--timestamps", action="store_true")
        _services(a)
    elif sub == "down":
        a("-v", "--volumes", action="store_true")
        a("--rmi", choices=["all", "local"])
        a("--remove-orphans", action="store_true")
        a("-t", "--timeout", type=int)
        _services(a)
    elif sub == "ps":
        a("-a", "--all", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("--services", dest="list_services", action="store_true")
        a("--format")
        a("--status", action="append", default=[])
        a("--filter", action="append", default=[])
        a("--no-trunc", action="store_true")
        a("--orphans", default="true")
        _services(a)
    elif sub == "logs":
        a("-f", "--follow", action="store_true")
        a("-n", "--tail", default="all")
        a("-t", "--timestamps", action="store_true")
        a("--no-color", action="store_true")
        a("--no-log-prefix", action="store_true")
        a("--since")
        a("--until")
        a("--index", type=int)
        _services(a)
    elif sub == "build":
        a("--no-cache", action="store_true")
        a("--pull", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("--build-arg", action="append", default=[])
        a("--with-dependencies", action="store_true")
        _services(a)
    elif sub in ("pull", "push"):
        a("-q", "--quiet", action="store_true")
        a(f"--ignore-{sub}-failures", action="store_true")
        a("--include-deps", action="store_true")
        _services(a)
    elif sub in ("start", "pause", "unpause", "top"):
        _services(a)
    elif sub in ("stop", "restart"):
        a("-t", "--timeout", type=int)
        if sub == "restart":
            a("--no-deps", action="store_true")
        _services(a)
    elif sub == "kill":
        a("-s", "--signal", default="SIGKILL")
        a("--remove-orphans", action="store_true")
        _services(a)
    elif sub == "rm":
        a("-f", "--force", action="store_true")
        a("-s", "--stop", action="store_true")
        a("-v", "--volumes", action="store_true")
        _services(a)
    elif sub == "exec":
        a("-d", "--detach", action="store_true")
        a("-e", "--env", action="append", default=[])
        a("-w", "--workdir")
        a("-u", "--user")
        a("-T", "--no-TTY", "--no-tty", dest="no_tty", action="store_true")
        a("-i", "--interactive", action="store_true")
        a("-t", "--tty", action="store_true")
        a("--index", type=int, default=1)
        a("--privileged", action="store_true")
        a("service")
        a("command", nargs=argparse.REMAINDER)
    elif sub == "run":
        a("-d", "--detach", action="store_true")
        a("--rm", action="store_true")
        a("-e", "--env", action="append", default=[])
        a("-l", "--label", action="append", default=[])
        a("--entrypoint")
        a("--name")
        a("--no-deps", action="store_true")
        a("-p", "--publish", action="append", default=[])
        a("-v", "--volume", action="append", default=[])
        a("-w", "--workdir")
        a("-u", "--user")
        a("-T", "--no-TTY", "--no-tty", dest="no_tty", action="store_true")
        a("-i", "--interactive", action="store_true")
        a("--service-ports", action="store_true")
        a("--use-aliases", action="store_true")
        a("--build", action="store_true")
        a("--quiet-pull", action="store_true")
        a("--remove-orphans", action="store_true")
        a("service")
        a("command", nargs=argparse.REMAINDER)
    elif sub == "port":
        a("--protocol", default="tcp")
        a("--index", type=int, default=1)
        a("service")
        a("private_port")
    elif sub == "images":
        a("-q", "--quiet", action="store_true")
        a("--format")
        _services(a)
    elif sub == "config":
        a("--services", dest="list_services", action="store_true")
        a("--volumes", action="store_true")
        a("--networks", action="store_true")
        a("--profiles", action="store_true")
        a("--images", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("--format", default="yaml", choices=["yaml", "json"])
        a("--hash")
        a("-o", "--output")
        a("--no-interpolate", action="store_true")
        a("--resolve-image-digests", action="store_true")
        _services(a)
    elif sub == "ls":
        a("-a", "--all", action="store_true")
        a("-q", "--quiet", action="store_true")
        a("--format")
        a("--filter", action="append", default=[])
    elif sub == "version":
        a("--short", action="store_true")
        a("-f", "--format")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    argv = list(args.argv)
    if argv[:1] == ["--"]:
        argv = argv[1:]
    head, words = split_globals(argv)
    gopts = _global_parser().parse_args(head)
    if gopts.version and not words:
        words = ["version"]
    if not words:
        raise InvalidArgument(
            "Usage:  dockyard compose [OPTIONS] COMMAND\n\nCommands:\n"
            + "".join(f"  {s}\n" for s in SUBCOMMANDS)
        )
    sub, rest = words[0], words[1:]
    if sub not in SUBCOMMANDS:
        raise InvalidArgument(f'unknown docker command: "compose {sub}"')
    parser = _parser(f"dockyard compose {sub}")
    _configure_sub(sub, parser)
    if sub in ("exec", "run"):
        from dockyard.cli.run_flags import split_at_image

        rest = split_at_image(parser, rest)
    ns = parser.parse_args(rest)
    if getattr(ns, "command", None) and ns.command[:1] == ["--"]:
        ns.command = ns.command[1:]
    from dockyard.compose import commands

    return int(commands.dispatch(sub, ctx, gopts, ns) or 0)


def load(gopts: argparse.Namespace, *, required: bool = True) -> Project | None:
    """The project the global flags describe (None when there is no file and not required)."""
    from dockyard.compose.loader import LoadOptions, load_project

    opts = LoadOptions(
        files=list(gopts.file),
        project_name=gopts.project_name,
        project_directory=gopts.project_directory,
        env_files=list(gopts.env_file),
        profiles=[p for value in gopts.profile for p in value.split(",") if p],
    )
    try:
        return load_project(opts)
    except DockyardError as err:
        if required or not gopts.project_name or "no configuration file" not in str(err):
            raise
        return None
