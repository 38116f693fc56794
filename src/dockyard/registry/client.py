"""A small HTTP client for the registry API (distribution spec v2).

Why not urllib or http.client: we need kept-alive connections shared by
download threads, streamed bodies in both directions, the HTTPS-then-HTTP
fallback Docker does for insecure registries, and the bearer-token dance on
401 -- and ``http.client`` drags in the ``email`` package, a cost every
``push``/``pull`` start-up would pay. The HTTP/1.1 needed here (Content-Length
and chunked bodies, keep-alive, HEAD) is small. One ``RegistryClient`` talks
to one registry.
"""

from __future__ import annotations

import errno
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urljoin, urlsplit

from dockyard.registry import tls
from dockyard.registry.auth import (
    Challenge,
    Credentials,
    RegistryError,
    Token,
    Unauthorized,
    error_text,
    fetch_token,
    get_credentials,
    parse_challenges,
)
from dockyard.registry.http1 import (  # noqa: F401 - CHUNK and the errors are used by callers
    CHUNK,
    Body,
    Connection,
    IncompleteRead,
    ProtocolError,
    RemoteDisconnected,
)

ATTEMPTS = 3
USER_AGENT = "dockyard/0.1 (docker-compatible)"


def _dial_error(url: str, host: str, err: BaseException) -> str:
    """Describe a connection failure the way Docker does, naming the host."""
    prefix = f'Get "{url}": '
    if isinstance(err, socket.gaierror):
        return f"{prefix}dial tcp: lookup {tls.split_host(host)[0]}: no such host"
    if isinstance(err, ConnectionRefusedError) or getattr(err, "errno", None) == errno.ECONNREFUSED:
        return f"{prefix}dial tcp {host}: connect: connection refused"
    if isinstance(err, TimeoutError | socket.timeout):
        return f"{prefix}dial tcp {host}: i/o timeout"
    ssl = _ssl_module()
    if ssl is not None and isinstance(err, ssl.SSLCertVerificationError):
        return f"{prefix}tls: failed to verify certificate: {err.verify_message}"
    if ssl is not None and isinstance(err, ssl.SSLError):
        return f"{prefix}tls: {err.reason or err}"
    return f"{prefix}{err.__class__.__name__}: {err}"


def _ssl_module() -> Any:
    """``ssl`` if something loaded it (an SSL error can only come from it)."""
    import sys

    return sys.modules.get("ssl")


def _position(body: Body) -> int | None:
    """Where a seekable body starts (so it can be sent again), else None."""
    tell = getattr(body, "tell", None)
    return int(tell()) if tell is not None and hasattr(body, "seek") else None


_TRANSIENT = (
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
    RemoteDisconnected,
    IncompleteRead,
    TimeoutError,
    socket.timeout,
)


class Response:
    """A response whose body is read on demand; the connection goes back to the pool after."""

    def __init__(self, client: RegistryClient, key: tuple[str, str], conn: Any, method: str):
        self._client = client
        self._key = key
        self._conn = conn
        status, headers, length, chunked, will_close = conn.response(method)
        self.status: int = status
        self.headers = headers
        self.length = length  # bytes of body left, None when chunked or until close
        self._chunked = chunked
        self._chunk_left = 0
        self._done = length == 0
        self.will_close = will_close
        self.url = ""
        if self._done:
            self._release(True)

    def header(self, name: str, default: str = "") -> str:
        return str(self.headers.get(name, default))

    def _release(self, reuse: bool) -> None:
        if self._conn is None:
            return
        conn, self._conn = self._conn, None
        if reuse and self._done and not self.will_close:
            self._client._put_conn(self._key, conn)
        else:
            conn.close()

    def _read_some(self, size: int) -> bytes:
        """Up to ``size`` bytes of body; b"" at its end (or when the server quit early)."""
        if self._done or self._conn is None:
            return b""
        file = self._conn.file
        if self._chunked:
            if self._chunk_left == 0:
                line = self._conn._line()
                try:
                    self._chunk_left = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
                if self._chunk_left == 0:
                    while self._conn._line() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    self._done = True
                    self._release(True)
                    return b""
            data = file.read(min(size, self._chunk_left))
            if not data:
                raise IncompleteRead("connection closed inside a chunk")
            self._chunk_left -= len(data)
            if self._chunk_left == 0:
                file.readline(8)  # the chunk's CRLF
            return bytes(data)
        if self.length is None:
            data = file.read1(size) if size > 0 else b""
            if not data:
                self._done = True
                self._release(False)
            return bytes(data)
        data = file.read(min(size, self.length))
        if not data:  # short body: the caller sees the end, as with http.client
            self._release(False)
            return b""
        self.length -= len(data)
        if self.length == 0:
            self._done = True
            self._release(True)
        return bytes(data)

    def read(self) -> bytes:
        parts = []
        try:
            while data := self._read_some(CHUNK):
                parts.append(data)
            if self.length:
                raise IncompleteRead(f"{self.length} more bytes expected")
        except BaseException:
            self._release(False)
            raise
        return b"".join(parts)

    def iter_chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        try:
            while data := self._read_some(size):
                yield data
        finally:
            self._release(False)  # a no-op once the body was read to its end

    def json(self) -> Any:
        try:
            return json.loads(self.read())
        except ValueError as err:
            raise RegistryError(f"invalid JSON from registry: {err}") from err

    def abort(self) -> None:
        """Break the connection, waking a thread blocked reading the body (thread-safe)."""
        conn = self._conn
        sock = conn.sock if conn is not None else None
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        """Drop the body: drain a small one so the connection can be reused."""
        if self._conn is None:
            return
        if self.length is not None and self.length <= 65536:
            try:
                self.read()
                return
            except OSError:
                pass
        self._release(False)


class RegistryClient:
    """Authenticated HTTP to one registry, shared by the threads of a pull or push."""

    def __init__(self, domain: str, creds: Credentials | None = None, lookup: bool = True) -> None:
        self.domain = domain
        self.host = "registry-1.docker.io" if domain == "docker.io" else domain
        self._creds = creds
        self._lookup = lookup and creds is None
        self.scopes: set[str] = set()
        self._endpoint: tls.Endpoint | None = None
        self._trying: tls.Endpoint | None = None
        self._ping_lock = threading.Lock()
        self._challenge: Challenge | None = None
        self._token: Token | None = None
        self._token_scopes: frozenset[str] = frozenset()
        self._offline = False  # ask the token server for a refresh token (login)
        self.identity_token = ""  # the refresh token it handed out, if any
        self._idle: dict[tuple[str, str], list[Any]] = {}
        self._lock = threading.Lock()
        self._auth_lock = threading.Lock()

    # --- credentials and connections ------------------------------------

    @property
    def creds(self) -> Credentials | None:
        if self._lookup:
            self._lookup = False
            self._creds = get_credentials(self.domain)
        return self._creds

    def _new_conn(self, scheme: str, netloc: str) -> Connection:
        name, port = tls.split_host(netloc)
        if scheme == "https":
            endpoint = self._endpoint or self._trying
            if netloc == self.host and endpoint is not None and endpoint.context:
                context = endpoint.context
            else:
                context = tls.tls_context(netloc, tls.has_ca(netloc) or not tls.is_insecure(netloc))
            return Connection(name, port or 443, context)
        return Connection(name, port or 80)

    def _get_conn(self, key: tuple[str, str]) -> tuple[Any, bool]:
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop(), True
        return self._new_conn(*key), False

    def _put_conn(self, key: tuple[str, str], conn: Any) -> None:
        with self._lock:
            self._idle.setdefault(key, []).append(conn)

    def close(self) -> None:
        with self._lock:
            for conns in self._idle.values():
                for conn in conns:
                    conn.close()
            self._idle.clear()

    def _send(self, method: str, url: str, headers: dict[str, str], body: Body) -> Response:
        """One HTTP exchange; a stale kept-alive connection is retried once on a fresh one."""
        parts = urlsplit(url)
        key = (parts.scheme, parts.netloc)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        start = _position(body)
        for fresh_try in range(2):
            conn, reused = self._get_conn(key) if fresh_try == 0 else (self._new_conn(*key), False)
            try:
                conn.request(method, target, body, headers)
                response = Response(self, key, conn, method)
            except OSError as err:
                conn.close()
                replayable = body is None or isinstance(body, bytes) or start is not None
                if reused and replayable and isinstance(err, _TRANSIENT):
                    if start is not None:
                        body.seek(start)  # type: ignore[union-attr]
                    continue
                raise
            response.url = url
            return response
        raise AssertionError("unreachable")

    # --- endpoint discovery and authentication ---------------------------

    def ping(self) -> None:
        """GET /v2/ on each endpoint in turn; learn how the registry wants us to authenticate."""
        if self._endpoint is not None:
            return
        with self._ping_lock:
            if self._endpoint is None:
                self._ping()

    def _ping(self) -> None:
        failures: list[tuple[BaseException | None, str]] = []
        for endpoint in tls.endpoints(self.host):
            url = f"{endpoint.base}/v2/"
            self._trying = endpoint
            try:
                response = self._send("GET", url, {"User-Agent": USER_AGENT}, None)
            except OSError as err:
                failures.append((err, _dial_error(url, self.host, err)))
                continue
            finally:
                self._trying = None
            api = response.header("Docker-Distribution-API-Version")
            challenges = parse_challenges(response.headers.get_all("WWW-Authenticate") or [])
            response.close()
            if response.status == 200 or (response.status == 401 and challenges):
                by_scheme = {c.scheme: c for c in challenges}
                self._challenge = by_scheme.get("bearer") or by_scheme.get("basic")
                self._endpoint = endpoint
                return
            if response.status in (401, 403) or (api and response.status < 500):
                self._challenge = None
                self._endpoint = endpoint
                return
            failures.append((None, f'Get "{url}": unexpected status {response.status}'))
        ssl = _ssl_module()
        verify = [
            m
            for e, m in failures
            if ssl is not None and isinstance(e, ssl.SSLCertVerificationError)
        ]
        refused = all(isinstance(e, ConnectionRefusedError) for e, _ in failures)
        message = verify[0] if verify and not refused else failures[-1][1]
        raise RegistryError(message, "UNREACHABLE")

    def _http_get(self, url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        return self._token_exchange("GET", url, headers, None)

    def _http_post(self, url: str, form: str) -> tuple[int, bytes]:
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "Content-Length": str(len(form)),
        }
        return self._token_exchange("POST", url, headers, form.encode())

    def _token_exchange(
        self, method: str, url: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, bytes]:
        """One request to a token server (no auth dance): (status, body)."""
        try:
            response = self._send(method, url, {"User-Agent": USER_AGENT, **headers}, body)
        except OSError as err:
            raise RegistryError(_dial_error(url, urlsplit(url).netloc, err)) from err
        return response.status, response.read()

    def add_scopes(self, scopes: Iterable[str]) -> None:
        """Ask for more access with the next token (thread-safe)."""
        with self._auth_lock:
            self.scopes.update(scopes)

    def _authorization(self, refresh: bool = False) -> str | None:
        challenge = self._challenge
        if challenge is None:
            return None
        creds = self.creds
        if challenge.scheme == "basic":
            return creds.basic if creds and creds.username else None
        if challenge.scheme != "bearer":
            return None
        with self._auth_lock:
            wanted = frozenset(self.scopes)
            token = self._token
            if (
                refresh
                or token is None
                or token.expires < time.monotonic()
                or not wanted <= self._token_scopes
            ):
                token = fetch_token(
                    challenge, wanted, creds, self._http_get, self._http_post, self._offline
                )
                self._token, self._token_scopes = token, wanted
                self.identity_token = token.refresh_token or self.identity_token
            return f"Bearer {token.value}"

    def check_login(self) -> None:
        """Prove the credentials work, as ``docker login`` does: ping, then authenticate."""
        self.ping()
        if self._challenge is None:
            return
        if self._challenge.scheme == "bearer":
            self._offline = True
            self._authorization(refresh=True)
            return
        response = self.request("GET", "/v2/", expect=(200,))
        response.close()

    # --- requests ----------------------------------------------------------

    def url(self, path: str) -> str:
        self.ping()
        assert self._endpoint is not None
        return urljoin(self._endpoint.base + "/", path)

    def request(
        self,
        method: str,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        body: Body = None,
        expect: tuple[int, ...] = (200,),
        allow: tuple[int, ...] = (),
        what: str = "",
    ) -> Response:
        """Send with authentication, retries and redirects; statuses outside expect+allow raise."""
        url = self.url(path)
        extra = dict(headers or {})
        start = _position(body)
        replayable = body is None or isinstance(body, bytes) or start is not None
        refreshed = False
        attempt = 0
        redirects = 0
        while True:
            attempt += 1
            send_headers = {"User-Agent": USER_AGENT, **extra}
            same_host = urlsplit(url).netloc == self.host
            auth = self._authorization() if same_host else None
            if auth:
                send_headers["Authorization"] = auth
            if start is not None:
                body.seek(start)  # type: ignore[union-attr]
            try:
                response = self._send(method, url, send_headers, body)
            except OSError as err:
                retry = (
                    isinstance(err, _TRANSIENT)
                    and replayable
                    and method in ("GET", "HEAD", "PUT")
                    and attempt < ATTEMPTS
                )
                if retry:
                    time.sleep(0.2 * attempt)
                    continue
                raise RegistryError(
                    _dial_error(url, urlsplit(url).netloc, err).replace(
                        "Get ", f"{method.title()} ", 1
                    ),
                    "UNREACHABLE",
                ) from err
            status = response.status
            if status in expect or status in allow:
                return response
            if (
                status in (301, 302, 303, 307, 308)
                and response.header("Location")
                and redirects < 5
            ):
                response.close()
                url = urljoin(url, response.header("Location"))
                redirects += 1
                if status == 303:
                    method, body, start, replayable = "GET", None, None, True
                continue
            if status == 401 and same_host and replayable and not refreshed:
                challenges = parse_challenges(response.headers.get_all("WWW-Authenticate") or [])
                response.close()
                for challenge in challenges:
                    if challenge.scheme in ("bearer", "basic"):
                        self._challenge = challenge
                    if challenge.params.get("scope"):
                        self.add_scopes(challenge.params["scope"].split(" "))
                refreshed = True
                self._authorization(refresh=True)
                continue
            if status in (502, 503, 504) and replayable and attempt < ATTEMPTS:
                response.close()
                time.sleep(0.5 * attempt)
                continue
            raise self.error(response, what)

    def error(self, response: Response, what: str = "") -> RegistryError:
        """The error a bad status means, with the registry's own message."""
        body = response.read()
        code = ""
        try:
            errors = json.loads(body).get("errors") or []
            code = str(errors[0].get("code", "")) if errors else ""
        except (ValueError, AttributeError, IndexError, TypeError):
            pass
        from http import HTTPStatus

        try:
            reason = HTTPStatus(response.status).phrase
        except ValueError:
            reason = "error"
        text = error_text(body, reason)
        if response.status == 401:
            if not text.startswith("unauthorized"):
                text = f"unauthorized: {text}"
            return Unauthorized(text, code or "UNAUTHORIZED", 401)
        if response.status == 403 and not code:
            code = "DENIED"
        prefix = f"{what}: " if what else ""
        return RegistryError(f"{prefix}{text}", code, response.status)
