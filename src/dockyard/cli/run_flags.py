"""The flags of ``run`` and ``create``, and their translation into a ContainerSpec."""

from __future__ import annotations

import argparse
import os

from dockyard.containers.spec import (
    ContainerSpec,
    Healthcheck,
    LogConfig,
    Resources,
    RestartPolicy,
    Ulimit,
)
from dockyard.errors import InvalidArgument


def add_container_flags(p: argparse.ArgumentParser) -> None:
    """Every flag ``docker create`` takes that dockyard supports."""
    a = p.add_argument
    a("-i", "--interactive", action="store_true")
    a("-t", "--tty", action="store_true")
    a("--name")
    a("-e", "--env", action="append", default=[])
    a("--env-file", action="append", default=[])
    a("-w", "--workdir")
    a("-u", "--user")
    a("--entrypoint")
    a("-h", "--hostname")
    a("--domainname")
    a("-l", "--label", action="append", default=[])
    a("--label-file", action="append", default=[])
    a("--restart", default="no")
    a("--rm", action="store_true")
    a("--stop-signal")
    a("--stop-timeout", type=int)
    a("--read-only", action="store_true")
    a("--cap-add", action="append", default=[])
    a("--cap-drop", action="append", default=[])
    a("--privileged", action="store_true")
    a("--init", action="store_true")
    a("--security-opt", action="append", default=[])
    a("-m", "--memory")
    a("--memory-swap")
    a("--cpus")
    a("-c", "--cpu-shares", type=int, default=0)
    a("--pids-limit", type=int, default=0)
    a("--shm-size")
    a("--ulimit", action="append", default=[])
    a("--log-driver", default="json-file")
    a("--log-opt", action="append", default=[])
    a("--health-cmd")
    a("--health-interval")
    a("--health-timeout")
    a("--health-retries", type=int, default=0)
    a("--health-start-period")
    a("--no-healthcheck", action="store_true")
    a("--platform")
    a("--pull", default="missing", choices=["always", "missing", "never"])
    a("-q", "--quiet", action="store_true")
    # network
    a("--network", "--net", default="bridge")
    a("--network-alias", "--net-alias", action="append", default=[])
    a("--ip")
    a("--add-host", action="append", default=[])
    a("--dns", action="append", default=[])
    a("--dns-search", action="append", default=[])
    a("--dns-option", "--dns-opt", action="append", default=[])
    a("-p", "--publish", action="append", default=[])
    a("-P", "--publish-all", action="store_true")
    a("--expose", action="append", default=[])
    # storage
    a("-v", "--volume", action="append", default=[])
    a("--mount", action="append", default=[])
    a("--tmpfs", action="append", default=[])
    a("--volumes-from", action="append", default=[])
    a("image")
    a("command", nargs=argparse.REMAINDER)


def split_at_image(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """Insert ``--`` before the image so that the command's own flags stay its own.

    argparse would otherwise try to read ``run busybox ls -l`` as run flags.
    """
    takes_value: set[str] = set()
    for action in parser._actions:
        if action.option_strings and action.nargs != 0:
            takes_value.update(action.option_strings)
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return argv
        if not arg.startswith("-") or arg == "-":
            return [*argv[:i], "--", *argv[i:]]
        if arg.startswith("--"):
            if "=" not in arg and arg in takes_value:
                i += 1
        elif len(arg) >= 2:
            # a cluster of short flags: the first one that takes a value eats the rest
            for j, ch in enumerate(arg[1:], start=1):
                if f"-{ch}" in takes_value:
                    if j == len(arg) - 1:
                        i += 1
                    break
        i += 1
    return argv


def _parse_env_file(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise InvalidArgument(
            f"open {path}: {err.strerror.lower() if err.strerror else err}"
        ) from None
    out = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key = line.split("=", 1)[0]
        if not key or any(c.isspace() for c in key):
            raise InvalidArgument(f"invalid environment variable: {line}")
        out.append(line)
    return out


def _parse_labels(values: list[str], files: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for path in files:
        for line in _parse_env_file(path):
            key, _, value = line.partition("=")
            labels[key] = value
    for value in values:
        key, _, val = value.partition("=")
        if not key:
            raise InvalidArgument(f"invalid label: {value}")
        labels[key] = val
    return labels


def parse_restart(value: str) -> RestartPolicy:
    name, _, count = value.partition(":")
    if name not in ("no", "always", "unless-stopped", "on-failure", ""):
        raise InvalidArgument(f"invalid restart policy: {value}")
    if count:
        if name != "on-failure":
            raise InvalidArgument(
                "invalid restart policy: maximum retry count can only be used with 'on-failure'"
            )
        if not count.isdigit():
            raise InvalidArgument(
                "invalid restart policy format: maximum retry count must be an integer"
            )
    return RestartPolicy(name or "no", int(count or 0))


def parse_ulimit(value: str) -> Ulimit:
    name, sep, limits = value.partition("=")
    if not sep or not name:
        raise InvalidArgument(f"invalid ulimit argument: {value}")
    soft_text, _, hard_text = limits.partition(":")
    try:
        soft = int(soft_text)
        hard = int(hard_text) if hard_text else soft
    except ValueError:
        raise InvalidArgument(f"invalid ulimit argument: {value}") from None
    known = (
        "core cpu data fsize locks memlock msgqueue nice nofile nproc rss rtprio rttime "
        "sigpending stack as"
    ).split()
    if name not in known:
        raise InvalidArgument(f"invalid ulimit type: {name}")
    if soft > hard:
        raise InvalidArgument(
            f"ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        )
    return Ulimit(name, soft, hard)


def _duration_ns(value: str | None, flag: str) -> int:
    if not value:
        return 0
    from dockyard.cli.formatting import parse_duration

    seconds = parse_duration(value)
    if seconds < 0:
        raise InvalidArgument(f"{flag} cannot be negative")
    return int(seconds * 1e9)


def parse_size_flag(value: str | None) -> int:
    """A size flag (``-m 512m``); empty is 0 (unset)."""
    if not value:
        return 0
    from dockyard.cli.formatting import parse_size

    return parse_size(value)


def parse_cpus(value: str) -> int:
    """``--cpus`` as nano-CPUs, with Docker's messages."""
    try:
        nano_cpus = int(float(value) * 1e9)
    except ValueError:
        raise InvalidArgument(
            f'invalid argument "{value}" for "--cpus" flag: failed to parse {value} as a rational number'
        ) from None
    if nano_cpus <= 0:
        raise InvalidArgument(
            f'invalid argument "{value}" for "--cpus" flag: range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only {os.cpu_count()} CPUs available'
        )
    if nano_cpus > (os.cpu_count() or 1) * 1_000_000_000:
        raise InvalidArgument(
            f"range of CPUs is from 0.01 to {os.cpu_count()}.00, as there are only {os.cpu_count()} CPUs available"
        )
    return nano_cpus


def to_spec(args: argparse.Namespace) -> ContainerSpec:
    """The ContainerSpec these flags describe; bad values raise InvalidArgument (exit 125)."""
    env: list[str] = []
    for path in args.env_file:
        env.extend(_parse_env_file(path))
    env.extend(args.env)
    entrypoint: list[str] | None = None
    if args.entrypoint is not None:
        entrypoint = [args.entrypoint] if args.entrypoint else []
    command = list(args.command or [])
    if command and command[0] == "--":
        command = command[1:]
    memory_swap = 0
    if args.memory_swap:
        memory_swap = -1 if args.memory_swap == "-1" else parse_size_flag(args.memory_swap)
    nano_cpus = parse_cpus(args.cpus) if args.cpus else 0
    resources = Resources(
        memory=parse_size_flag(args.memory),
        memory_swap=memory_swap,
        nano_cpus=nano_cpus,
        cpu_shares=args.cpu_shares,
        pids_limit=args.pids_limit,
        shm_size=parse_size_flag(args.shm_size),
    )
    if resources.memory and resources.memory < 6 * 1024 * 1024:
        raise InvalidArgument("Minimum memory limit allowed is 6MB")
    log = LogConfig()
    if args.log_driver not in ("json-file", "local", "none"):
        raise InvalidArgument(f'logging driver "{args.log_driver}" is not supported')
    log.type = args.log_driver
    for opt in args.log_opt:
        key, sep, value = opt.partition("=")
        if not sep:
            raise InvalidArgument(f"invalid log opt format: {opt}")
        if key == "max-size":
            log.max_size = parse_size_flag(value)
        elif key == "max-file":
            if not value.isdigit() or int(value) < 1:
                raise InvalidArgument("max-file cannot be less than 1")
            log.max_file = int(value)
        else:
            raise InvalidArgument(f"unknown log opt '{key}' for json-file log driver")
    healthcheck: Healthcheck | None = None
    if args.no_healthcheck:
        if args.health_cmd:
            raise InvalidArgument("--no-healthcheck conflicts with --health-* options")
        healthcheck = Healthcheck(test=["NONE"])
    elif (
        args.health_cmd
        or args.health_interval
        or args.health_timeout
        or args.health_retries
        or args.health_start_period
    ):
        if args.health_retries < 0:
            raise InvalidArgument("--health-retries cannot be negative")
        healthcheck = Healthcheck(
            test=["CMD-SHELL", args.health_cmd] if args.health_cmd else [],
            interval=_duration_ns(args.health_interval, "--health-interval"),
            timeout=_duration_ns(args.health_timeout, "--health-timeout"),
            retries=args.health_retries,
            start_period=_duration_ns(args.health_start_period, "--health-start-period"),
        )
    if args.stop_signal:
        from dockyard.runtime.runc import parse_signal

        parse_signal(args.stop_signal)
    spec = ContainerSpec(
        image=args.image,
        name=args.name,
        entrypoint=entrypoint,
        cmd=command or None,
        env=env,
        working_dir=args.workdir,
        user=args.user,
        hostname=args.hostname,
        domainname=args.domainname,
        labels=_parse_labels(args.label, args.label_file),
        tty=args.tty,
        stdin_open=args.interactive,
        auto_remove=args.rm,
        restart_policy=parse_restart(args.restart),
        stop_signal=args.stop_signal,
        stop_timeout=args.stop_timeout,
        read_only=args.read_only,
        cap_add=args.cap_add,
        cap_drop=args.cap_drop,
        privileged=args.privileged,
        init=args.init,
        security_opt=args.security_opt,
        resources=resources,
        ulimits=[parse_ulimit(u) for u in args.ulimit],
        log_config=log,
        healthcheck=healthcheck,
    )
    if spec.working_dir is not None and spec.working_dir and not spec.working_dir.startswith("/"):
        raise InvalidArgument(
            f"the working directory '{spec.working_dir}' is invalid, it needs to be an absolute path"
        )
    apply_network_flags(spec, args)
    apply_storage_flags(spec, args)
    return spec


def apply_network_flags(spec: ContainerSpec, args: argparse.Namespace) -> None:
    """Network flags, parsed and checked by the network subsystem."""
    from dockyard.network.options import apply_network_args, parse_expose

    apply_network_args(spec, args)
    spec.expose = [key for value in args.expose for key in parse_expose(value)]


def apply_storage_flags(spec: ContainerSpec, args: argparse.Namespace) -> None:
    """-v, --mount, --tmpfs and --volumes-from, parsed by the volume subsystem."""
    from dockyard.volumes.parse import parse_storage_flags, parse_volumes_from

    spec.mounts = parse_storage_flags(args.volume, args.mount, args.tmpfs)
    for value in args.volumes_from:
        parse_volumes_from(value)
    spec.volumes_from = list(args.volumes_from)
