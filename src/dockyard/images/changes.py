"""``--change`` instructions of ``import`` and ``commit``: Dockerfile lines applied to a config.

Supports what Docker accepts there: CMD, ENTRYPOINT, ENV, EXPOSE, HEALTHCHECK,
LABEL, ONBUILD, STOPSIGNAL, USER, VOLUME and WORKDIR, with the exec (JSON)
and shell forms, quotes, and ``$VAR`` expansion from the config's ENV.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from dockyard.errors import InvalidArgument

_VALID = (
    "cmd entrypoint env expose healthcheck label onbuild stopsignal user volume workdir".split()
)
_SHELL = ["/bin/sh", "-c"]


def apply_changes(config: dict[str, Any], changes: list[str]) -> dict[str, Any]:
    """A copy of the image ``config`` section with each change line applied in order."""
    out = copy.deepcopy(config) if config else {}
    for line in changes:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        if "\t" in word:
            word, _, tail = word.partition("\t")
            rest = tail + " " + rest
        instruction = word.lower()
        rest = rest.strip()
        if instruction not in _VALID:
            raise InvalidArgument(f"{word.upper()} is not a valid change command")
        _APPLY[instruction](out, rest)
    return out


def _env_map(config: dict[str, Any]) -> dict[str, str]:
    env: dict[str, str] = {}
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        env[key] = value
    return env


def split_words(text: str, env: dict[str, str] | None = None) -> list[str]:
    """Shell-like words: quotes and backslashes processed, ``$VAR`` expanded (not in '')."""
    words: list[str] = []
    current = ""
    have = False
    i, quote = 0, ""
    while i < len(text):
        c = text[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                current += c
        elif c == "\\" and i + 1 < len(text):
            i += 1
            current += text[i]
            have = True
        elif quote == '"':
            if c == '"':
                quote = ""
            elif c == "$" and env is not None:
                value, i = _expand(text, i, env)
                current += value
                continue
            else:
                current += c
        elif c in "'\"":
            quote = c
            have = True
        elif c.isspace():
            if current or have:
                words.append(current)
            current, have = "", False
        elif c == "$" and env is not None:
            value, i = _expand(text, i, env)
            current += value
            have = True
            continue
        else:
            current += c
        i += 1
    if quote:
        raise InvalidArgument(f"unexpected end of statement while looking for matching {quote}")
    if current or have:
        words.append(current)
    return words


_VAR_RE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)


def _expand(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    m = _VAR_RE.match(text, i)
    if not m:
        return "$", i + 1
    name = m.group(1) or m.group(4)
    value = env.get(name, "")
    if m.group(2) == "-" and not value:
        value = m.group(3)
    elif m.group(2) == "+":
        value = m.group(3) if value else ""
    return value, m.end()


def _exec_or_shell(rest: str) -> list[str]:
    """JSON exec form if it parses as a list of strings, else ``/bin/sh -c``."""
    if rest.startswith("["):
        try:
            value = json.loads(rest)
        except ValueError:
            value = None
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return value
    return [*_SHELL, rest] if rest else []


def _key_values(rest: str, env: dict[str, str], instruction: str) -> list[tuple[str, str]]:
    words = split_words(rest, env)
    if not words:
        raise InvalidArgument(f"{instruction} requires at least one argument")
    if "=" not in words[0]:
        # legacy "ENV key value with spaces"
        key, _, value = rest.partition(" ")
        if not value.strip():
            raise InvalidArgument(f"{instruction} names can not be blank")
        return [(key, " ".join(split_words(value.strip(), env)))]
    pairs: list[tuple[str, str]] = []
    for word in words:
        key, sep, value = word.partition("=")
        if not sep:
            raise InvalidArgument(
                f"Syntax error - can't find = in {word!r}. Must be of the form: name=value"
            )
        if not key:
            raise InvalidArgument(f"{instruction} names can not be blank")
        pairs.append((key, value))
    return pairs


def _cmd(config: dict[str, Any], rest: str) -> None:
    config["Cmd"] = _exec_or_shell(rest)


def _entrypoint(config: dict[str, Any], rest: str) -> None:
    config["Entrypoint"] = _exec_or_shell(rest)
    # Docker resets CMD inherited from the base when ENTRYPOINT changes in a build;
    # for --change it keeps the current CMD, which is what we do.


def _env(config: dict[str, Any], rest: str) -> None:
    env = list(config.get("Env") or [])
    for key, value in _key_values(rest, _env_map(config), "ENV"):
        entry = f"{key}={value}"
        for i, existing in enumerate(env):
            if existing.partition("=")[0] == key:
                env[i] = entry
                break
        else:
            env.append(entry)
        config["Env"] = env


def _label(config: dict[str, Any], rest: str) -> None:
    labels = dict(config.get("Labels") or {})
    for key, value in _key_values(rest, _env_map(config), "LABEL"):
        labels[key] = value
    config["Labels"] = labels


def _expose(config: dict[str, Any], rest: str) -> None:
    ports = dict(config.get("ExposedPorts") or {})
    for word in split_words(rest, _env_map(config)):
        port, _, proto = word.partition("/")
        proto = (proto or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise InvalidArgument(f"invalid proto: {proto}")
        low, _, high = port.partition("-")
        try:
            first, last = int(low), int(high or low)
        except ValueError:
            raise InvalidArgument(f"invalid containerPort: {port}") from None
        if not 0 < first <= last <= 65535:
            raise InvalidArgument(f"invalid containerPort: {port}")
        for number in range(first, last + 1):
            ports[f"{number}/{proto}"] = {}
    config["ExposedPorts"] = ports


def _user(config: dict[str, Any], rest: str) -> None:
    words = split_words(rest, _env_map(config))
    if len(words) != 1:
        raise InvalidArgument("USER requires exactly one argument")
    config["User"] = words[0]


def _volume(config: dict[str, Any], rest: str) -> None:
    volumes = dict(config.get("Volumes") or {})
    names: list[str]
    if rest.startswith("["):
        try:
            names = json.loads(rest)
        except ValueError:
            names = split_words(rest, _env_map(config))
    else:
        names = split_words(rest, _env_map(config))
    if not names:
        raise InvalidArgument("VOLUME requires at least one argument")
    for name in names:
        if not str(name).strip():
            raise InvalidArgument("VOLUME specified can not be an empty string")
        volumes[str(name)] = {}
    config["Volumes"] = volumes


def _workdir(config: dict[str, Any], rest: str) -> None:
    words = split_words(rest, _env_map(config))
    if len(words) != 1:
        raise InvalidArgument("WORKDIR requires exactly one argument")
    import posixpath

    path = words[0]
    if not path.startswith("/"):
        path = posixpath.join(config.get("WorkingDir") or "/", path)
    config["WorkingDir"] = posixpath.normpath(path) if path != "/" else "/"


def _stopsignal(config: dict[str, Any], rest: str) -> None:
    words = split_words(rest, _env_map(config))
    if len(words) != 1:
        raise InvalidArgument("STOPSIGNAL requires exactly one argument")
    config["StopSignal"] = words[0]


def _onbuild(config: dict[str, Any], rest: str) -> None:
    word = rest.split(None, 1)[0].upper() if rest.strip() else ""
    if word in ("ONBUILD", "FROM", "MAINTAINER", ""):
        raise InvalidArgument(f"{word or 'ONBUILD'} isn't allowed as an ONBUILD trigger")
    config["OnBuild"] = [*(config.get("OnBuild") or []), rest]


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1, "us": 1e3, "µs": 1e3, "ms": 1e6, "s": 1e9, "m": 60e9, "h": 3600e9}


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for m in _DURATION_RE.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidArgument(f'time: invalid duration "{text}"')
    return int(total)


def _healthcheck(config: dict[str, Any], rest: str) -> None:
    words = rest.split()
    options: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        options[key] = value
    if not words:
        raise InvalidArgument("HEALTHCHECK requires an argument")
    kind = words[0].upper()
    if kind == "NONE":
        if len(words) > 1 or options:
            raise InvalidArgument("HEALTHCHECK NONE takes no arguments")
        config["Healthcheck"] = {"Test": ["NONE"]}
        return
    if kind != "CMD":
        raise InvalidArgument(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    command = rest[rest.upper().index("CMD") + 3 :].strip()
    test = _exec_or_shell(command)
    health: dict[str, Any] = {
        "Test": ["CMD", *test] if test[:2] != _SHELL else ["CMD-SHELL", test[2]]
    }
    for key, field in (
        ("interval", "Interval"),
        ("timeout", "Timeout"),
        ("start-period", "StartPeriod"),
        ("start-interval", "StartInterval"),
    ):
        if key in options:
            health[field] = parse_duration(options.pop(key))
    if "retries" in options:
        try:
            health["Retries"] = int(options.pop("retries"))
        except ValueError:
            raise InvalidArgument("HEALTHCHECK --retries must be a number") from None
    if options:
        raise InvalidArgument(f"Unknown flag: {next(iter(options))}")
    config["Healthcheck"] = health


_APPLY = {
    "cmd": _cmd,
    "entrypoint": _entrypoint,
    "env": _env,
    "expose": _expose,
    "healthcheck": _healthcheck,
    "label": _label,
    "onbuild": _onbuild,
    "stopsignal": _stopsignal,
    "user": _user,
    "volume": _volume,
    "workdir": _workdir,
}
