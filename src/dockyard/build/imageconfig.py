"""Image config and history text as BuildKit writes them.

The ``config`` section keeps Docker's field order (that of Go's struct) and
leaves empty fields out; history ``created_by`` strings reproduce Go's
``%q``/``%v`` formatting of the values (``CMD ["sh" "-c" "x"]``,
``EXPOSE [80/tcp]``, ``HEALTHCHECK {Test:[CMD-SHELL x] Interval:30s ...}``).
"""

from __future__ import annotations

import copy
import posixpath
import re
from typing import Any

from dockyard.build import BuildError

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_SHELL = ["/bin/sh", "-c"]
CONFIG_ORDER = (
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "ArgsEscaped",
    "Healthcheck",
    "OnBuild",
    "Shell",
)


def initial_config(base: dict[str, Any] | None, arch: str, variant: str) -> dict[str, Any]:
    """A stage's starting image config: its base's (or scratch's), ``rootfs``,
    ``created`` and ``OnBuild`` dropped, PATH added when missing (BuildKit)."""
    if base is None:
        out: dict[str, Any] = {
            "architecture": arch,
            "config": {"Env": [f"PATH={DEFAULT_PATH}"], "WorkingDir": "/"},
            "history": [],
            "os": "linux",
        }
        if variant:
            out["variant"] = variant
        return out
    keep = ("architecture", "author", "config", "history", "os", "os.version", "os.features")
    out = {k: copy.deepcopy(v) for k, v in base.items() if k in keep or k == "variant"}
    out.setdefault("architecture", arch)
    out.setdefault("os", "linux")
    out.setdefault("history", [])
    section = dict(out.get("config") or {})
    env = list(section.get("Env") or [])
    if not any(e.split("=", 1)[0] == "PATH" for e in env):
        env.append(f"PATH={DEFAULT_PATH}")
    section["Env"] = env
    section.pop("OnBuild", None)
    out["config"] = normalize(section)
    return out


def normalize(section: dict[str, Any]) -> dict[str, Any]:
    """The config section in Docker's field order, empty values left out."""
    out = {k: section[k] for k in CONFIG_ORDER if section.get(k) not in (None, "", [], {}, False)}
    for key in ("ExposedPorts", "Volumes", "Labels"):
        if key in out:  # Go writes map keys sorted
            out[key] = dict(sorted(out[key].items()))
    return out


def add_env(env: list[str], key: str, value: str) -> list[str]:
    """Replace ``key``'s entry in place, or append it."""
    out = list(env)
    for i, item in enumerate(out):
        if item.split("=", 1)[0] == key:
            out[i] = f"{key}={value}"
            return out
    out.append(f"{key}={value}")
    return out


def env_dict(env: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def with_shell(section: dict[str, Any], args: list[str]) -> list[str]:
    shell = list(section.get("Shell") or DEFAULT_SHELL)
    return [*shell, " ".join(args)]


def normalize_workdir(current: str, path: str) -> str:
    if not path:
        raise BuildError("cannot normalize nothing")
    joined = path if path.startswith("/") else posixpath.join("/", current or "/", path)
    return posixpath.normpath(joined).replace("//", "/")


def dest_path(workdir: str, dest: str) -> str:
    """A COPY/ADD destination relative to WORKDIR; a trailing "/" is kept."""
    if dest in ("", "."):
        dest = "./"
    base = "/" if dest.startswith("/") else (workdir or "/")
    path = posixpath.normpath(posixpath.join(base, dest))
    if path.startswith("//"):
        path = path[1:]
    if dest.endswith("/") or dest.endswith("/."):
        path = path.rstrip("/") + "/"
    return path


# -- Go formatting -----------------------------------------------------------------

_GO_ESCAPES = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(text: str) -> str:
    """Go's strconv.Quote."""
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x80:
            out.append(f"\\x{ord(ch):02x}")
        elif ord(ch) < 0x10000:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(f"\\U{ord(ch):08x}")
    out.append('"')
    return "".join(out)


def go_quote_list(items: list[str]) -> str:
    """``fmt.Sprintf("%q", []string{...})``."""
    return "[" + " ".join(go_quote(i) for i in items) + "]"


def go_list(items: list[str]) -> str:
    """``fmt.Sprintf("%v", []string{...})``."""
    return "[" + " ".join(items) + "]"


def go_duration(ns: int) -> str:
    """Go's time.Duration.String()."""
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _frac(ns, size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _frac(rest, 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _frac(value: int, unit: int) -> str:
    whole, rest = divmod(value, unit)
    if not rest:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{rest:0{digits}d}".rstrip("0")


def healthcheck_history(check: dict[str, Any]) -> str:
    test = go_list(list(check.get("Test") or []))
    parts = [
        f"Test:{test}",
        f"Interval:{go_duration(int(check.get('Interval') or 0))}",
        f"Timeout:{go_duration(int(check.get('Timeout') or 0))}",
        f"StartPeriod:{go_duration(int(check.get('StartPeriod') or 0))}",
        f"StartInterval:{go_duration(int(check.get('StartInterval') or 0))}",
        f"Retries:{int(check.get('Retries') or 0)}",
    ]
    return "HEALTHCHECK {" + " ".join(parts) + "}"


_PORT = re.compile(r"^(\d+)(?:-(\d+))?(?:/([A-Za-z]+))?$")


def parse_ports(specs: list[str]) -> list[str]:
    """EXPOSE arguments to "port/proto" keys (ranges expanded, tcp by default)."""
    out: list[str] = []
    for spec in specs:
        text = spec
        if ":" in text:  # [ip:]hostPort:containerPort: only the container port counts
            text = text.rsplit(":", 1)[1]
        match = _PORT.match(text)
        if not match:
            raise BuildError(f"invalid containerPort: {spec}")
        start = int(match.group(1))
        end = int(match.group(2) or start)
        proto = (match.group(3) or "tcp").lower()
        if proto not in ("tcp", "udp", "sctp"):
            raise BuildError(f"invalid proto: {proto}")
        if end < start or end > 65535:
            raise BuildError(f"invalid range specified for container port: {spec}")
        for port in range(start, end + 1):
            key = f"{port}/{proto}"
            if key not in out:
                out.append(key)
    return out
