"""Just enough HTTP/1.1 for the registry client, over a socket.

Content-Length, chunked and until-close bodies, keep-alive, HEAD, 1xx
responses skipped; TLS when the caller hands over an ``ssl`` context (so
``ssl`` itself is only needed for HTTPS). ``http.client`` would do, but it
imports the ``email`` package, a start-up cost every ``push``/``pull`` paid.
"""

from __future__ import annotations

import socket
from collections.abc import Iterable
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 120.0
CHUNK = 1 << 20
MAX_HEADER_LINE = 65536
MAX_HEADERS = 200

Body = bytes | IO[bytes] | Iterable[bytes] | None


class ProtocolError(OSError):
    """The server did not speak HTTP/1.1 as it should (bad status line, bad chunk)."""


class RemoteDisconnected(ConnectionResetError):
    """The server closed the connection without answering (e.g. a stale kept-alive one)."""


class IncompleteRead(ConnectionError):
    """The connection ended before the whole body arrived."""


class Headers:
    """Response headers: case-insensitive, repeated names kept."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs
        self._map: dict[str, str] = {}
        for name, value in pairs:
            self._map.setdefault(name.lower(), value)

    def get(self, name: str, default: str | None = None) -> str | None:
        return self._map.get(name.lower(), default)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._pairs if n.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __getitem__(self, name: str) -> str | None:
        return self._map.get(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._map


class Connection:
    """One kept-alive HTTP/1.1 connection (TLS when a context is given)."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext | None = None) -> None:
        self.host = host
        self.port = port
        self.context = context
        self.sock: Any = None
        self.file: Any = None

    def connect(self) -> None:
        # an ASCII host skips the idna codec (and its import) in getaddrinfo
        host: str | bytes = self.host
        if isinstance(host, str) and host.isascii():
            host = host.encode()
        sock = socket.create_connection((host, self.port), CONNECT_TIMEOUT)  # type: ignore[arg-type]
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.context is not None:
                sock.settimeout(CONNECT_TIMEOUT)
                sock = self.context.wrap_socket(sock, server_hostname=self.host)
            sock.settimeout(READ_TIMEOUT)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self.file = sock.makefile("rb", buffering=65536)

    def close(self) -> None:
        file, sock, self.file, self.sock = self.file, self.sock, None, None
        if file is not None:
            file.close()
        if sock is not None:
            sock.close()

    def request(self, method: str, target: str, body: Body, headers: dict[str, str]) -> None:
        if self.sock is None:
            self.connect()
        names = {k.lower() for k in headers}
        lines = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header()}"]
        if "accept-encoding" not in names:
            lines.append("Accept-Encoding: identity")
        chunked = False
        if "content-length" not in names and "transfer-encoding" not in names:
            if isinstance(body, bytes | bytearray):
                lines.append(f"Content-Length: {len(body)}")
            elif body is None:
                if method in ("POST", "PUT", "PATCH"):
                    lines.append("Content-Length: 0")
            else:
                chunked = True
                lines.append("Transfer-Encoding: chunked")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        send = self.sock.sendall
        if body is None:
            send(head)
        elif isinstance(body, bytes | bytearray):
            if len(body) <= 65536:
                send(head + body)
            else:
                send(head)
                send(body)
        else:
            send(head)
            read = getattr(body, "read", None)
            pieces: Iterable[bytes] = iter(lambda: read(CHUNK), b"") if read else body
            for piece in pieces:
                if not piece:
                    continue
                if chunked:
                    size = f"{len(piece):x}\r\n".encode()
                    if len(piece) <= 65536:
                        send(size + piece + b"\r\n")
                    else:
                        send(size)
                        send(piece)
                        send(b"\r\n")
                else:
                    send(piece)
            if chunked:
                send(b"0\r\n\r\n")

    def _host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.context is not None else 80
        return host if self.port == default else f"{host}:{self.port}"

    def _line(self) -> bytes:
        line = self.file.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise ProtocolError("HTTP header line too long")
        return bytes(line)

    def response(self, method: str) -> tuple[int, Headers, int | None, bool, bool]:
        """(status, headers, body length or None, chunked, will_close)."""
        while True:
            line = self._line()
            if not line:
                raise RemoteDisconnected("Remote end closed connection without response")
            parts = line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
                raise ProtocolError(f"bad HTTP status line: {line[:100]!r}")
            version, status = parts[0], int(parts[1])
            pairs: list[tuple[str, str]] = []
            while True:
                raw = self._line()
                if raw in (b"\r\n", b"\n", b""):
                    break
                if len(pairs) >= MAX_HEADERS:
                    raise ProtocolError("too many HTTP headers")
                name, sep, value = raw.decode("latin-1").partition(":")
                if not sep:
                    continue
                pairs.append((name.strip(), value.strip()))
            if 100 <= status < 200 and status != 101:
                continue  # 100 Continue and friends: the real answer follows
            break
        headers = Headers(pairs)
        connection = (headers.get("Connection") or "").lower()
        will_close = connection == "close" or (version == "HTTP/1.0" and connection != "keep-alive")
        if method == "HEAD" or status in (204, 304):
            return status, headers, 0, False, will_close
        if "chunked" in (headers.get("Transfer-Encoding") or "").lower():
            return status, headers, None, True, will_close
        length = headers.get("Content-Length")
        if length is not None:
            try:
                size = int(length.split(",")[0])
            except ValueError:
                raise ProtocolError(f"bad Content-Length {length!r}") from None
            return status, headers, max(size, 0), False, will_close
        return status, headers, None, False, True  # the body ends when the connection does
