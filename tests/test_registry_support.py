"""Real registries for the registry tests: Debian's docker-registry on loopback.

Fixtures here start ``docker-registry serve`` on 127.0.0.1 with a free port,
a temporary storage directory and (optionally) TLS, htpasswd or token auth,
and stop it by PID afterwards. The token server is a tiny http.server thread
that signs JWTs (RS256, ``x5c`` header) with a certificate the registry trusts.
Other registry test modules import the fixtures from here.
"""

from __future__ import annotations

import base64
import datetime
import http.server
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.records import field, record

REGISTRY_BIN = shutil.which("docker-registry") or "/usr/bin/docker-registry"

needs_registry = pytest.mark.skipif(
    not os.access(REGISTRY_BIN, os.X_OK), reason="docker-registry is not installed"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@record
class Registry:
    """A running docker-registry process."""

    port: int
    storage: Path
    proc: subprocess.Popen[bytes]
    log: Path
    scheme: str = "http"
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return f"localhost:{self.port}"

    def blob_path(self, digest: str) -> Path:
        hexpart = digest.removeprefix("sha256:")
        return self.storage / "docker/registry/v2/blobs/sha256" / hexpart[:2] / hexpart / "data"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_registry(
    tmp: Path,
    *,
    tls: tuple[Path, Path] | None = None,
    htpasswd: Path | None = None,
    token: dict[str, str] | None = None,
) -> Registry:
    """Start docker-registry on loopback and wait until it answers."""
    tmp.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = tmp / "storage"
    storage.mkdir(exist_ok=True)
    lines = [
        "version: 0.1",
        "log:",
        "  level: warn",
        "  accesslog:",
        "    disabled: true",
        "storage:",
        "  filesystem:",
        f"    rootdirectory: {storage}",
        "  delete:",
        "    enabled: true",
        "  maintenance:",
        "    uploadpurging:",
        "      enabled: false",
        "http:",
        f"  addr: 127.0.0.1:{port}",
    ]
    if tls:
        lines += ["  tls:", f"    certificate: {tls[0]}", f"    key: {tls[1]}"]
    if htpasswd:
        lines += ["auth:", "  htpasswd:", "    realm: basic-realm", f"    path: {htpasswd}"]
    if token:
        lines += ["auth:", "  token:"] + [f"    {k}: {v}" for k, v in token.items()]
    config = tmp / "config.yml"
    config.write_text("\n".join(lines) + "\n")
    log = tmp / "registry.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [REGISTRY_BIN, "serve", str(config)], stdout=out, stderr=subprocess.STDOUT
        )
    reg = Registry(port, storage, proc, log, "https" if tls else "http")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"docker-registry exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return reg
        except OSError:
            time.sleep(0.05)
    reg.stop()
    raise RuntimeError("docker-registry did not start")


@pytest.fixture(name="registry")
def registry_fixture(tmp_path: Path) -> Iterator[Registry]:
    """An open (no auth, plain HTTP) registry."""
    if not os.access(REGISTRY_BIN, os.X_OK):
        pytest.skip("docker-registry is not installed")
    reg = start_registry(tmp_path / "registry")
    yield reg
    reg.stop()


@pytest.fixture(name="docker_config")
def docker_config_fixture(tmp_path: Path, dockyard_env: dict[str, str]) -> Path:
    """An empty DOCKER_CONFIG for the test, so no real credentials are read or written."""
    path = tmp_path / "docker-config"
    path.mkdir()
    dockyard_env["DOCKER_CONFIG"] = str(path)
    return path


# --- certificates --------------------------------------------------------------


def make_ca(directory: Path, name: str = "dockyard test CA") -> tuple[Any, Any, Path]:
    """A self-signed CA: (key, cert, cert_path)."""
    pytest.importorskip("cryptography")
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.crt"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "ca.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return key, cert, path


def make_server_cert(directory: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    """A certificate for localhost / 127.0.0.1 signed by the CA: (cert_path, key_path)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.crt", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def write_htpasswd(path: Path, users: dict[str, str]) -> Path:
    bcrypt = pytest.importorskip("bcrypt")

    lines = [
        f"{user}:{bcrypt.hashpw(pw.encode(), bcrypt.gensalt(rounds=5)).decode()}"
        for user, pw in users.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


# --- token server ------------------------------------------------------------


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class TokenServer:
    """Issues registry JWTs on ``GET /token``, checking basic credentials if any were given;
    with ``offline_token=true`` also a refresh token, which ``POST /token`` takes back in
    an OAuth2 refresh-token grant (``offline=True``, as Docker Hub's and ACR's do)."""

    def __init__(self, directory: Path, users: dict[str, str], service: str, issuer: str):
        from cryptography.hazmat.primitives import serialization

        self.key, cert, self.cert_path = make_ca(directory / "token", "token signer")
        self.cert_der = cert.public_bytes(serialization.Encoding.DER)
        self.users, self.service, self.issuer = users, service, issuer
        self.requests: list[dict[str, Any]] = []
        self.offline = False
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> user
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                server.handle(self)

            def do_POST(self) -> None:  # noqa: N802
                server.handle_grant(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def sign(self, claims: dict[str, Any]) -> str:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        header = {"alg": "RS256", "typ": "JWT", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(claims).encode())
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)

    def handle(self, req: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs, urlsplit

        query = parse_qs(urlsplit(req.path).query)
        user = ""
        auth = req.headers.get("Authorization", "")
        self.requests.append({"query": query, "auth": bool(auth)})
        if auth.startswith("Basic "):
            user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
            if self.users.get(user) != password:
                body = json.dumps({"details": "incorrect username or password"}).encode()
                req.send_response(401)
                req.send_header("Content-Type", "application/json")
                req.send_header("Content-Length", str(len(body)))
                req.end_headers()
                req.wfile.write(body)
                return
        refresh = ""
        if user and self.offline and query.get("offline_token") == ["true"]:
            refresh = os.urandom(12).hex()
            self.refresh_tokens[refresh] = user
        self._issue(req, user, query.get("scope", []), refresh)

    def handle_grant(self, req: http.server.BaseHTTPRequestHandler) -> None:
        from urllib.parse import parse_qs

        form = parse_qs(req.rfile.read(int(req.headers.get("Content-Length", "0"))).decode())
        self.requests.append({"query": form, "auth": False, "method": "POST"})
        user = self.refresh_tokens.get(form.get("refresh_token", [""])[0], "")
        if form.get("grant_type") != ["refresh_token"] or not user:
            body = json.dumps({"error": "invalid_grant"}).encode()
            req.send_response(401)
            req.send_header("Content-Length", str(len(body)))
            req.end_headers()
            req.wfile.write(body)
            return
        self._issue(req, user, form.get("scope", [""])[0].split(), "")

    def _issue(
        self, req: http.server.BaseHTTPRequestHandler, user: str, scopes: list[str], refresh: str
    ) -> None:
        access = []
        for scope in scopes:
            kind, name, actions = scope.split(":", 2) if scope.count(":") >= 2 else ("", "", "")
            granted = [
                a for a in actions.split(",") if a == "pull" or (user and a in ("push", "*"))
            ]
            if kind == "repository" and (user or name.startswith("public/")):
                access.append({"type": kind, "name": name, "actions": granted})
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": self.service,
            "exp": now + 300,
            "nbf": now - 10,
            "iat": now,
            "jti": os.urandom(8).hex(),
            "access": access,
        }
        token = self.sign(claims)
        answer: dict[str, Any] = {"token": token, "access_token": token, "expires_in": 300}
        if refresh:
            answer["refresh_token"] = refresh
        body = json.dumps(answer).encode()
        req.send_response(200)
        req.send_header("Content-Type", "application/json")
        req.send_header("Content-Length", str(len(body)))
        req.end_headers()
        req.wfile.write(body)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


# --- images made in-process -----------------------------------------------------


def open_store(env: dict[str, str]) -> Any:
    """The ImageStore of a test's DOCKYARD_ROOT (caller closes ``store.db``)."""
    from dockyard.cli.context import Context

    ctx = Context(root=env["DOCKYARD_ROOT"], runroot=env["DOCKYARD_RUNROOT"])
    return ctx.images


def import_image(env: dict[str, str], tar: Path, ref: str) -> str:
    """Import a rootfs tarball as ``ref`` into the test's store; returns the image ID."""
    store = open_store(env)
    try:
        with open(tar, "rb") as f:
            return str(store.import_tar(f, reference=ref).id)
    finally:
        store.db.close()


def tar_bytes(files: dict[str, bytes]) -> bytes:
    import io
    import tarfile

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def layered_image(env: dict[str, str], base_tar: Path, ref: str, extra_layers: list[bytes]) -> str:
    """busybox plus extra (uncompressed) layers, as ``ref``; returns the image ID."""
    import io

    store = open_store(env)
    try:
        with open(base_tar, "rb") as f:
            records = [store.ingest_layer(f)]
        for data in extra_layers:
            records.append(store.ingest_layer(io.BytesIO(data)))
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": ["sh"]},
            "created": "2024-01-01T00:00:00Z",
            "history": [{"created": "2024-01-01T00:00:00Z"} for _ in records],
        }
        return str(store.create_image(config, records, [ref]).id)
    finally:
        store.db.close()


def sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def write_oci_layout(
    directory: Path, tag: str, images: list[tuple[str, str, bytes]], *, index: bool
) -> Path:
    """An OCI image layout with one manifest per (os, arch, layer tar), for skopeo to copy.

    With ``index`` the tag names an image index of all of them, else the first manifest.
    """
    blobs = directory / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)

    def put(data: bytes) -> str:
        digest = sha256(data)
        (blobs / digest[7:]).write_bytes(data)
        return digest

    manifests = []
    for os_name, arch, layer in images:
        config = json.dumps(
            {
                "architecture": arch,
                "os": os_name,
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256(layer)]},
            }
        ).encode()
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": put(config),
                    "size": len(config),
                },
                "layers": [
                    {
                        "mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "digest": put(layer),
                        "size": len(layer),
                    }
                ],
            }
        ).encode()
        manifests.append(
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "digest": put(manifest),
                "size": len(manifest),
                "platform": {"os": os_name, "architecture": arch},
            }
        )
    if index:
        body = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.index.v1+json",
                "manifests": manifests,
            }
        ).encode()
        top = {
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": put(body),
            "size": len(body),
        }
    else:
        top = dict(manifests[0])
        top.pop("platform")
    top["annotations"] = {"org.opencontainers.image.ref.name": tag}
    (directory / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [top]}))
    (directory / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    return directory


# --- self-tests of the harness -------------------------------------------------


@needs_registry
def test_registry_fixture_answers(registry: Registry) -> None:
    with urllib.request.urlopen(f"http://127.0.0.1:{registry.port}/v2/", timeout=5) as resp:
        assert resp.status == 200
        assert resp.headers["Docker-Distribution-API-Version"] == "registry/2.0"
