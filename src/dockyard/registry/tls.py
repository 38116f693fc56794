"""Which registries are spoken to over what: TLS settings and the insecure list.

Docker's rules: HTTPS with the system CAs, plus per-registry files in
``/etc/docker/certs.d/HOST:PORT/`` (``*.crt`` CA roots, ``*.cert``/``*.key``
client pairs). A registry is "insecure" when it is on loopback or listed in
the configuration; then HTTPS is tried without verification first and plain
HTTP second.
"""

from __future__ import annotations

import ipaddress
import json
import os
import ssl
from functools import cache
from pathlib import Path

from dockyard.errors import DockyardError
from dockyard.records import record

DEFAULT_CERTS_D = "/etc/docker/certs.d"
SYSTEM_CONFIG = "/etc/dockyard/registries.json"


def certs_dir() -> Path:
    """The per-registry certificate directory (``DOCKYARD_CERTS_D`` overrides it for tests)."""
    return Path(os.environ.get("DOCKYARD_CERTS_D") or DEFAULT_CERTS_D)


def _config_files() -> list[Path]:
    files = []
    if os.environ.get("DOCKYARD_REGISTRIES_CONFIG"):
        files.append(Path(os.environ["DOCKYARD_REGISTRIES_CONFIG"]))
    root = os.environ.get("DOCKYARD_ROOT")
    if root:
        files.append(Path(root) / "registries.json")
    files.append(Path(SYSTEM_CONFIG))
    return files


@cache
def insecure_registries() -> tuple[str, ...]:
    """Registries (``host[:port]`` or CIDR) named insecure by env or configuration."""
    entries: list[str] = []
    env = os.environ.get("DOCKYARD_INSECURE_REGISTRIES", "")
    entries.extend(e.strip() for e in env.split(",") if e.strip())
    for path in _config_files():
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            continue
        except (OSError, ValueError) as err:
            raise DockyardError(f"invalid registry configuration {path}: {err}") from err
        listed = data.get("insecure-registries", []) if isinstance(data, dict) else []
        entries.extend(str(e) for e in listed)
    return tuple(entries)


def split_host(host: str) -> tuple[str, int | None]:
    """``("127.0.0.1", 5000)`` from ``127.0.0.1:5000``; handles ``[::1]:5000``."""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest.removeprefix(":")
        return name, int(port) if port else None
    if host.count(":") == 1:
        name, port = host.split(":")
        return name, int(port) if port.isdigit() else None
    return host, None


def is_loopback(host: str) -> bool:
    name, _ = split_host(host)
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def is_insecure(host: str) -> bool:
    """Whether plain HTTP (and unverified HTTPS) may be used for this registry."""
    if is_loopback(host):
        return True
    name, _ = split_host(host)
    for entry in insecure_registries():
        entry = entry.removeprefix("http://").removeprefix("https://").rstrip("/")
        if entry in (host, name):
            return True
        if "/" in entry:
            try:
                if ipaddress.ip_address(name) in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue
    return False


@record(frozen=True)
class Endpoint:
    """One way to reach a registry: a scheme and, for HTTPS, its TLS context."""

    scheme: str
    host: str
    context: ssl.SSLContext | None

    @property
    def base(self) -> str:
        return f"{self.scheme}://{self.host}"


def _load_certs_d(context: ssl.SSLContext, host: str) -> None:
    directory = certs_dir() / host
    if not directory.is_dir():
        return
    for entry in sorted(directory.iterdir()):
        if entry.suffix == ".crt":
            try:
                context.load_verify_locations(cafile=str(entry))
            except (ssl.SSLError, OSError) as err:
                raise DockyardError(f"invalid CA certificate {entry}: {err}") from err
        elif entry.suffix == ".cert":
            key = entry.with_suffix(".key")
            if not key.exists():
                raise DockyardError(f"missing key {key.name} for client certificate {entry}")
            try:
                context.load_cert_chain(str(entry), str(key))
            except (ssl.SSLError, OSError) as err:
                raise DockyardError(f"invalid client certificate {entry}: {err}") from err
        elif entry.suffix == ".key" and not entry.with_suffix(".cert").exists():
            raise DockyardError(f"missing client certificate {entry.stem}.cert for key {entry}")


@cache
def tls_context(host: str, verify: bool = True) -> ssl.SSLContext:
    """System CAs plus ``certs.d/HOST`` files; unverified for insecure registries."""
    if verify:
        context = ssl.create_default_context()
    else:  # no CA bundle to load: nothing is checked against it
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    _load_certs_d(context, host)
    return context


def has_ca(host: str) -> bool:
    directory = certs_dir() / host
    return directory.is_dir() and any(p.suffix == ".crt" for p in directory.iterdir())


def endpoints(host: str) -> list[Endpoint]:
    """The endpoints to try in order, as Docker does: HTTPS, then HTTP if insecure.

    An insecure registry's certificate is not verified, unless a CA was put in
    ``certs.d`` for it: whoever did that wants it checked.
    """
    if is_insecure(host):
        https = Endpoint("https", host, tls_context(host, has_ca(host)))
        return [https, Endpoint("http", host, None)]
    return [Endpoint("https", host, tls_context(host, True))]
