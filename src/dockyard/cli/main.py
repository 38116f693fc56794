"""The ``dockyard`` command: global flags, then one lazily imported command.

The CLI is thin: each command module parses its flags and calls the engine
library. Only the module of the command being run is imported, which keeps
start-up fast (every container start pays for it).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from dockyard.errors import DockyardError

# command name -> module under dockyard.cli that implements it
COMMAND_MODULES: dict[str, str] = {
    # images
    "images": "image_commands",
    "image inspect": "image_commands",
    "image prune": "image_commands",
    "import": "image_commands",
    "load": "image_commands",
    "save": "image_commands",
    "tag": "image_commands",
    "rmi": "image_commands",
    "history": "image_commands",
    "commit": "image_commands",
    # containers
    "create": "container_commands",
    "run": "container_commands",
    "start": "container_commands",
    "ps": "container_commands",
    "stop": "container_commands",
    "kill": "container_commands",
    "restart": "container_commands",
    "rm": "container_commands",
    "inspect": "container_commands",
    "wait": "container_commands",
    "rename": "container_commands",
    "pause": "container_commands",
    "update": "update_commands",
    "unpause": "container_commands",
    "container prune": "container_commands",
    "container cleanup": "container_commands",
    "logs": "io_commands",
    "attach": "io_commands",
    "exec": "io_commands",
    "top": "io_commands",
    "stats": "io_commands",
    "cp": "fs_commands",
    "diff": "fs_commands",
    "export": "fs_commands",
    "events": "events_commands",
    "version": "misc_commands",
    "info": "misc_commands",
    "system reset": "misc_commands",
    "system df": "system_commands",
    "system prune": "system_commands",
    # building
    "build": "build_commands",
    "builder prune": "build_commands",
    "bootstrap": "build_commands",
    # registries
    "pull": "registry_commands",
    "push": "registry_commands",
    "login": "registry_commands",
    "logout": "registry_commands",
    "manifest inspect": "registry_commands",
    # volumes
    "volume create": "volume_commands",
    "volume ls": "volume_commands",
    "volume inspect": "volume_commands",
    "volume rm": "volume_commands",
    "volume prune": "volume_commands",
    # networks
    "network create": "network_commands",
    "network ls": "network_commands",
    "network inspect": "network_commands",
    "network rm": "network_commands",
    "network prune": "network_commands",
    "network connect": "network_commands",
    "network disconnect": "network_commands",
    "port": "network_commands",
    # compose: global flags come before the subcommand, so it parses everything itself
    "compose": "compose_commands",
}

# management-command forms ("docker container ls") -> the short command
ALIASES: dict[str, str] = {
    "image ls": "images",
    "image list": "images",
    "image rm": "rmi",
    "image remove": "rmi",
    "image tag": "tag",
    "image import": "import",
    "image load": "load",
    "image save": "save",
    "image history": "history",
    "container ls": "ps",
    "container list": "ps",
    "container ps": "ps",
    "container inspect": "inspect",
    "container commit": "commit",
    "container export": "export",
    "volume list": "volume ls",
    "volume remove": "volume rm",
    "network list": "network ls",
    "network remove": "network rm",
    "container port": "port",
    "image build": "build",
    "buildx build": "build",
    "system info": "info",
    "system events": "events",
    "image pull": "pull",
    "image push": "push",
}
for _name in (
    "create run start stop kill restart rm wait rename pause unpause logs attach exec top stats "
    "cp diff"
).split():
    ALIASES[f"container {_name}"] = _name


# Commands whose engine errors exit 125 (Docker's StatusError); others exit 1.
STATUS_125_COMMANDS = {"run", "create"}


class UsageError(DockyardError):
    """A bad flag or argument: exit 125 for every command, as Docker's CLI."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that reports errors the Docker way: one line, exit 125."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message}\nSee '{self.prog} --help'.")


def _split_global(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = ArgumentParser(prog="dockyard", add_help=False)
    parser.add_argument("--root")
    parser.add_argument("--runroot")
    parser.add_argument("--runtime")
    parser.add_argument("-D", "--debug", action="store_true")
    parser.add_argument("-v", "--version", action="store_true")
    parser.add_argument("-h", "--help", action="store_true")
    rest: list[str] = []
    i = 0
    # global flags come before the command
    while i < len(argv) and argv[i].startswith("-"):
        rest.append(argv[i])
        if argv[i] in ("--root", "--runroot", "--runtime") and i + 1 < len(argv):
            rest.append(argv[i + 1])
            i += 1
        i += 1
    return parser.parse_args(rest), argv[i:]


def _usage() -> str:
    names = sorted({c.split()[0] for c in COMMAND_MODULES} | {"image", "container"})
    return "Usage:  dockyard [OPTIONS] COMMAND\n\nCommands:\n" + "".join(f"  {n}\n" for n in names)


def resolve_command(words: list[str]) -> tuple[str, list[str]]:
    """The canonical command name and its arguments, from e.g. ``container ls -a``."""
    if not words:
        raise DockyardError(_usage().rstrip())
    if len(words) >= 2:
        pair = f"{words[0]} {words[1]}"
        if pair in ALIASES:
            return ALIASES[pair], words[2:]
        if pair in COMMAND_MODULES:
            return pair, words[2:]
    if words[0] in COMMAND_MODULES:
        return words[0], words[1:]
    groups = {c.split()[0] for c in (*COMMAND_MODULES, *ALIASES) if " " in c}
    if words[0] in groups:
        subcommands = sorted(
            {c.split()[1] for c in (*COMMAND_MODULES, *ALIASES) if c.startswith(words[0] + " ")}
        )
        raise UsageError(
            f"Usage:  dockyard {words[0]} COMMAND\n\nCommands:\n"
            + "".join(f"  {name}\n" for name in subcommands).rstrip()
        )
    raise DockyardError(f"dockyard: '{words[0]}' is not a dockyard command.\nSee 'dockyard --help'")


class _Flag:
    value = False


opts_debug = _Flag()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from dockyard.cli.context import Context

    command = ""
    opts_debug.value = "-D" in argv or "--debug" in argv
    try:
        opts, words = _split_global(argv)
        if opts.version and not words:
            from dockyard import __version__

            print(f"dockyard version {__version__}")
            return 0
        if opts.help and not words:
            print(_usage(), end="")
            return 0
        command, args = resolve_command(words)
        module = importlib.import_module(f"dockyard.cli.{COMMAND_MODULES[command]}")
        parser = ArgumentParser(prog=f"dockyard {command}", add_help=False)
        parser.add_argument("--help", action="help", help=argparse.SUPPRESS)
        module.configure(command, parser)
        if hasattr(module, "preprocess"):
            args = module.preprocess(command, parser, args)
        parsed = parser.parse_args(args)
        ctx = Context(root=opts.root, runroot=opts.runroot, runtime=opts.runtime, debug=opts.debug)
        try:
            return int(module.execute(command, ctx, parsed) or 0)
        finally:
            ctx.close()
    except DockyardError as err:
        sys.stdout.flush()
        print(f"Error: {err}" if "\n" not in str(err) else str(err), file=sys.stderr)
        code = err.exit_code
        if code == 125 and command not in STATUS_125_COMMANDS and not isinstance(err, UsageError):
            code = 1
        return code
    except KeyboardInterrupt:
        return 130
    except OSError as err:
        if getattr(opts_debug, "value", False):
            raise
        print(f"Error: {err}", file=sys.stderr)
        return 125 if command in STATUS_125_COMMANDS else 1
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
