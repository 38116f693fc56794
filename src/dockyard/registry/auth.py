"""Registry credentials and the token flow, compatible with Docker's own files.

Credentials live in ``$DOCKER_CONFIG/config.json`` (default ``~/.docker``)
exactly as Docker keeps them (``"auths": {"host": {"auth": base64(user:pass)}}``),
or in a credential helper named by ``credsStore``/``credHelpers`` that speaks
Docker's JSON protocol. So a ``docker login`` works here and the other way round.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from dockyard.errors import DockyardError
from dockyard.records import field, record

INDEX_SERVER = "https://index.docker.io/v1/"
DOCKER_HUB_DOMAINS = ("docker.io", "index.docker.io", "registry-1.docker.io")


class RegistryError(DockyardError):
    """A registry operation failed; pull/push/login exit 1 like Docker's CLI."""

    exit_code = 1

    def __init__(self, message: str, code: str = "", status: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class Unauthorized(RegistryError):
    """The registry refused our credentials (or wants some)."""


@record
class Credentials:
    """What we present to a registry: user and password, or an identity token."""

    username: str = ""
    password: str = ""
    identity_token: str = ""

    @property
    def basic(self) -> str:
        raw = f"{self.username}:{self.password}".encode()
        import base64

        return "Basic " + base64.b64encode(raw).decode()


def config_dir() -> Path:
    env = os.environ.get("DOCKER_CONFIG")
    return Path(env) if env else Path.home() / ".docker"


def config_path() -> Path:
    return config_dir() / "config.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    try:
        data = json.loads(path.read_text() or "{}")
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise DockyardError(f"loading config file {path}: {err}") from err
    if not isinstance(data, dict):
        raise DockyardError(f"loading config file {path}: not a JSON object")
    return data


def save_config(data: dict[str, Any]) -> None:
    """Write the file atomically, readable only by its owner, as Docker does."""
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent="\t")
        f.write("\n")
    os.replace(tmp, path)


def server_key(domain: str) -> str:
    """The key Docker files credentials under for a registry domain."""
    return INDEX_SERVER if domain in DOCKER_HUB_DOMAINS else domain


def hostname_of(server: str) -> str:
    """Docker's ConvertToHostname: ``https://host:5000/v1/`` -> ``host:5000``."""
    server = re.sub(r"^https?://", "", server)
    return server.split("/", 1)[0]


def normalize_server(server: str | None) -> str:
    """The registry a ``login``/``logout`` argument names, as a config key."""
    if not server:
        return INDEX_SERVER
    host = hostname_of(server)
    return INDEX_SERVER if host in DOCKER_HUB_DOMAINS else host


def _helper_for(config: dict[str, Any], key: str) -> str:
    helpers = config.get("credHelpers") or {}
    host = hostname_of(key)
    for name in (key, host):
        if name in helpers:
            return str(helpers[name])
    return str(config.get("credsStore") or "")


def _run_helper(helper: str, action: str, payload: str) -> str:
    program = f"docker-credential-{helper}"
    try:
        import subprocess

        proc = subprocess.run(
            [program, action], input=payload, capture_output=True, text=True, timeout=60
        )
    except FileNotFoundError as err:
        raise DockyardError(
            f'error getting credentials - err: exec: "{program}": executable file not found in $PATH'
        ) from err
    if proc.returncode != 0:
        message = (proc.stdout.strip() or proc.stderr.strip()).splitlines()
        text = message[-1] if message else f"{program} {action} failed"
        if "credentials not found" in text:
            raise LookupError(text)
        verb = {"get": "getting", "store": "storing", "erase": "erasing"}.get(action, action)
        raise DockyardError(f"error {verb} credentials via {program}: {text}")
    return proc.stdout


def _from_file(config: dict[str, Any], key: str) -> Credentials | None:
    auths = config.get("auths") or {}
    entry = auths.get(key)
    if entry is None:
        host = hostname_of(key)
        for name, value in auths.items():
            if hostname_of(name) == host:
                entry = value
                break
    if not isinstance(entry, dict):
        return None
    creds = Credentials(
        str(entry.get("username") or ""),
        str(entry.get("password") or ""),
        str(entry.get("identitytoken") or ""),
    )
    if entry.get("auth"):
        try:
            import base64

            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        except (ValueError, UnicodeDecodeError) as err:
            raise DockyardError(f"invalid auth configuration for {key}: {err}") from err
        creds.username, creds.password = user, password
    if not (creds.username or creds.identity_token):
        return None
    return creds


def get_credentials(domain: str) -> Credentials | None:
    """Saved credentials for a registry domain, from a helper or config.json."""
    config = load_config()
    key = server_key(domain)
    helper = _helper_for(config, key)
    if helper:
        try:
            out = json.loads(_run_helper(helper, "get", key))
        except LookupError:
            return None
        except ValueError as err:
            raise DockyardError(f"credential helper {helper} returned invalid JSON") from err
        user, secret = str(out.get("Username") or ""), str(out.get("Secret") or "")
        if user == "<token>":
            return Credentials(identity_token=secret)
        return Credentials(user, secret) if user else None
    return _from_file(config, key)


def store_credentials(key: str, creds: Credentials) -> bool:
    """Save credentials; True when they went to a helper (so no plaintext warning)."""
    config = load_config()
    helper = _helper_for(config, key)
    if helper:
        payload = json.dumps(
            {
                "ServerURL": key,
                "Username": creds.username or "<token>",
                "Secret": creds.identity_token or creds.password,
            }
        )
        _run_helper(helper, "store", payload)
        auths = config.setdefault("auths", {})
        if key not in auths:
            auths[key] = {}
            save_config(config)
        return True
    import base64

    entry: dict[str, str] = {}
    if creds.username or creds.password:  # with an identity token: the user name alone
        entry["auth"] = base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
    if creds.identity_token:
        entry["identitytoken"] = creds.identity_token
    config.setdefault("auths", {})[key] = entry
    save_config(config)
    return False


def erase_credentials(key: str) -> bool:
    """Forget a registry's credentials; False when none were saved."""
    config = load_config()
    auths = config.get("auths") or {}
    found = key in auths
    helper = _helper_for(config, key)
    if helper:
        try:
            _run_helper(helper, "erase", key)
            found = True
        except LookupError:
            pass
    if key in auths:
        del auths[key]
        save_config(config)
    return found


# --- WWW-Authenticate challenges and bearer tokens -------------------------

_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')


@record
class Challenge:
    """One parsed ``WWW-Authenticate`` header: ``Bearer realm=...,service=...``."""

    scheme: str
    params: dict[str, str] = field(default_factory=dict)


def parse_challenges(headers: Iterable[str]) -> list[Challenge]:
    challenges = []
    for header in headers:
        scheme, _, rest = header.strip().partition(" ")
        params = {}
        pos = 0
        while pos < len(rest):
            match = _PARAM.match(rest, pos)
            if not match:
                break
            value = match.group(2) if match.group(2) is not None else match.group(3)
            params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", value)
            pos = match.end()
        challenges.append(Challenge(scheme.lower(), params))
    return challenges


@record
class Token:
    value: str
    expires: float
    refresh_token: str = ""  # an identity token, when asked for one (login)


HttpGet = Callable[[str, dict[str, str]], tuple[int, bytes]]
HttpPost = Callable[[str, str], tuple[int, bytes]]  # (url, form body)
CLIENT_ID = "docker"  # what Docker sends as the OAuth client_id; token servers know it


def error_text(body: bytes, fallback: str) -> str:
    """A registry's error body as Docker prints it: ``code: message``."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode(errors="replace").strip()
        return text.splitlines()[0] if text else fallback
    if isinstance(data, dict):
        errors = data.get("errors")
        if isinstance(errors, list) and errors:
            parts = []
            for err in errors:
                code = str(err.get("code", "")).lower().replace("_", " ")
                parts.append(f"{code}: {err.get('message', '')}".strip(": "))
            return "; ".join(parts)
        for name in ("details", "detail", "error_description", "message", "error"):
            if isinstance(data.get(name), str):
                return str(data[name])
    return fallback


def fetch_token(
    challenge: Challenge,
    scopes: Iterable[str],
    creds: Credentials | None,
    http_get: HttpGet,
    http_post: HttpPost | None = None,
    offline: bool = False,
) -> Token:
    """A bearer token from the challenge's realm for these scopes, as Docker gets one.

    With an identity token (what ``docker login`` keeps when the token server hands
    out refresh tokens, or what ``az acr login`` writes): an OAuth2 refresh-token
    grant, POSTed. Otherwise a GET, with basic credentials if any; ``offline`` (login)
    also asks for a refresh token to keep instead of the password.
    """
    realm = challenge.params.get("realm")
    if not realm:
        raise RegistryError("registry sent a Bearer challenge without a realm")
    service = challenge.params.get("service", "")
    if creds and creds.identity_token and http_post is not None:
        form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token}
        form.update(client_id=CLIENT_ID, access_type="offline" if offline else "online")
        if service:
            form["service"] = service
        if scopes:
            form["scope"] = " ".join(sorted(set(scopes)))
        status, body = http_post(realm, urlencode(form))
        if status not in (404, 405):  # else no OAuth there: a GET, as Docker falls back
            return _token_from(realm, status, body)
    query: list[tuple[str, str]] = []
    if service:
        query.append(("service", service))
    for scope in sorted(set(scopes)):
        query.append(("scope", scope))
    headers = {}
    if creds and creds.username:
        query.append(("account", creds.username))
        headers["Authorization"] = creds.basic
        if offline:
            query += [("offline_token", "true"), ("client_id", CLIENT_ID)]
    url = realm + ("&" if "?" in realm else "?") + urlencode(query)
    status, body = http_get(url, headers)
    return _token_from(realm, status, body)


def _token_from(realm: str, status: int, body: bytes) -> Token:
    if status in (401, 403):
        raise Unauthorized(
            f"unauthorized: {error_text(body, 'incorrect username or password')}",
            "UNAUTHORIZED",
            status,
        )
    if status != 200:
        raise RegistryError(
            f"token server {realm} answered {status}: {error_text(body, 'no token')}"
        )
    try:
        data = json.loads(body)
        value = data.get("token") or data.get("access_token")
    except (ValueError, AttributeError):
        value = None
    if not value:
        raise RegistryError(f"token server {realm} sent no token")
    lifetime = data.get("expires_in") or 60
    lifetime = max(float(lifetime) if isinstance(lifetime, int | float) else 60.0, 60.0)
    refresh = data.get("refresh_token")
    return Token(
        str(value), time.monotonic() + lifetime - 5, refresh if isinstance(refresh, str) else ""
    )
