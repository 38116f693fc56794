"""login/logout, credentials in Docker's config.json and helpers, basic, bearer and TLS."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import (  # noqa: F401 - fixtures
    Registry,
    TokenServer,
    docker_config_fixture,
    import_image,
    make_ca,
    make_server_cert,
    needs_registry,
    start_registry,
    write_htpasswd,
)

pytestmark = [needs_registry, pytest.mark.usefixtures("docker_config")]

USER, PASSWORD = "alice", "s3cret"


@pytest.fixture
def basic_registry(tmp_path: Path) -> Iterator[Registry]:
    htpasswd = write_htpasswd(tmp_path / "htpasswd", {USER: PASSWORD})
    reg = start_registry(tmp_path / "basic", htpasswd=htpasswd)
    yield reg
    reg.stop()


@pytest.fixture
def token_registry(tmp_path: Path) -> Iterator[tuple[Registry, TokenServer]]:
    server = TokenServer(tmp_path, {USER: PASSWORD}, "test-registry", "test-issuer")
    reg = start_registry(
        tmp_path / "token",
        token={
            "realm": server.realm,
            "service": "test-registry",
            "issuer": "test-issuer",
            "rootcertbundle": str(server.cert_path),
        },
    )
    yield reg, server
    reg.stop()
    server.stop()


def login(dy, host: str, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    return dy("login", "-u", USER, "--password-stdin", host, input=password + "\n")


def test_basic_auth_login_push_pull_logout(
    basic_registry: Registry,
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    docker_config: Path,
) -> None:
    host = basic_registry.host
    ref = f"{host}/private/busybox:latest"
    import_image(dockyard_env, busybox_tar, ref)

    anonymous = dy("push", ref)
    assert anonymous.returncode == 1
    assert "unauthorized" in anonymous.stderr.lower()
    assert len(anonymous.stderr.strip().splitlines()) == 1

    wrong = login(dy, host, "nope")
    assert wrong.returncode == 1
    assert "unauthorized" in wrong.stderr.lower()
    assert not (docker_config / "config.json").exists()

    ok = login(dy, host)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == "Login Succeeded"
    assert "stored unencrypted" in ok.stderr
    config = json.loads((docker_config / "config.json").read_text())
    assert base64.b64decode(config["auths"][host]["auth"]).decode() == f"{USER}:{PASSWORD}"
    assert stat.S_IMODE((docker_config / "config.json").stat().st_mode) == 0o600

    assert dy("push", ref).returncode == 0
    other = dict(dockyard_env, DOCKYARD_ROOT=str(Path(dockyard_env["DOCKYARD_ROOT"]) / "x"))
    import subprocess

    pulled = subprocess.run(
        [sys.executable, "-m", "dockyard", "pull", ref],
        env=other,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pulled.returncode == 0, pulled.stderr

    out = dy("logout", host)
    assert out.stdout.strip() == f"Removing login credentials for {host}"
    assert host not in json.loads((docker_config / "config.json").read_text()).get("auths", {})
    assert dy("logout", host).stdout.strip() == f"Not logged in to {host}"


def test_credentials_written_by_docker_are_used(
    basic_registry: Registry,
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    docker_config: Path,
) -> None:
    host = basic_registry.host
    auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    (docker_config / "config.json").write_text(
        json.dumps({"auths": {f"https://{host}": {"auth": auth}}, "psFormat": "table"})
    )
    ref = f"{host}/busybox:latest"
    import_image(dockyard_env, busybox_tar, ref)
    proc = dy("push", ref)
    assert proc.returncode == 0, proc.stderr
    # login with existing credentials keeps the user's other settings
    assert dy("login", host).stdout.strip() == "Login Succeeded"
    assert json.loads((docker_config / "config.json").read_text())["psFormat"] == "table"


def test_login_needs_tty_or_password(dy, docker_config: Path) -> None:
    proc = dy("login", "localhost:1", input="")
    assert proc.returncode == 1
    assert "Cannot perform an interactive login from a non TTY device" in proc.stderr
    proc = dy("login", "--password-stdin", "localhost:1", input="x")
    assert "Must provide --username with --password-stdin" in proc.stderr


HELPER = """#!{python}
import json, os, sys
store = os.environ["CRED_STORE_FILE"]
data = json.load(open(store)) if os.path.exists(store) else {{}}
action = sys.argv[1]
raw = sys.stdin.read()
if action == "store":
    entry = json.loads(raw)
    data[entry["ServerURL"]] = entry
    json.dump(data, open(store, "w"))
elif action == "get":
    key = raw.strip()
    if key not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(data[key]))
elif action == "erase":
    key = raw.strip()
    if key not in data:
        print("credentials not found in native keychain")
        sys.exit(1)
    del data[key]
    json.dump(data, open(store, "w"))
"""


def test_credential_helper(
    basic_registry: Registry,
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    docker_config: Path,
    tmp_path: Path,
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-dytest"
    helper.write_text(HELPER.format(python=sys.executable))
    helper.chmod(0o755)
    store_file = tmp_path / "helper-store.json"
    dockyard_env["PATH"] = f"{bindir}:{dockyard_env['PATH']}"
    dockyard_env["CRED_STORE_FILE"] = str(store_file)
    (docker_config / "config.json").write_text(json.dumps({"credsStore": "dytest"}))
    host = basic_registry.host

    proc = login(dy, host)
    assert proc.returncode == 0, proc.stderr
    assert "unencrypted" not in proc.stderr
    saved = json.loads(store_file.read_text())
    assert saved[host] == {"ServerURL": host, "Username": USER, "Secret": PASSWORD}
    config = json.loads((docker_config / "config.json").read_text())
    assert "auth" not in config.get("auths", {}).get(host, {})

    ref = f"{host}/helped:latest"
    import_image(dockyard_env, busybox_tar, ref)
    assert dy("push", ref).returncode == 0

    assert dy("logout", host).returncode == 0
    assert host not in json.loads(store_file.read_text())


def test_bearer_token_flow(
    token_registry: tuple[Registry, TokenServer],
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    tmp_path: Path,
) -> None:
    reg, server = token_registry
    ref = f"{reg.host}/team/app:1"
    import_image(dockyard_env, busybox_tar, ref)

    denied = dy("push", ref)
    assert denied.returncode == 1
    assert len(denied.stderr.strip().splitlines()) == 1

    wrong = login(dy, reg.host, "bad")
    assert wrong.returncode == 1 and "unauthorized" in wrong.stderr.lower()
    assert login(dy, reg.host).returncode == 0

    server.requests.clear()
    proc = dy("push", ref)
    assert proc.returncode == 0, proc.stderr
    scopes = {s for r in server.requests for s in r["query"].get("scope", [])}
    assert "repository:team/app:pull,push" in scopes
    assert all(r["auth"] for r in server.requests)

    # cross-repository mount asks for pull on the source repository too
    store_ctx = __import__("test_registry_support").open_store(dockyard_env)
    try:
        store_ctx.tag(ref, f"{reg.host}/team/copy:1")
    finally:
        store_ctx.db.close()
    server.requests.clear()
    proc = dy("push", f"{reg.host}/team/copy:1")
    assert proc.returncode == 0, proc.stderr
    assert "Mounted from team/app" in proc.stdout
    scopes = {s for r in server.requests for s in r["query"].get("scope", [])}
    assert "repository:team/app:pull" in scopes

    other = dict(dockyard_env, DOCKYARD_ROOT=str(tmp_path / "fresh"))
    import subprocess

    pulled = subprocess.run(
        [sys.executable, "-m", "dockyard", "pull", ref],
        env=other,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert pulled.returncode == 0, pulled.stderr

    assert dy("logout", reg.host).returncode == 0
    anonymous = subprocess.run(
        [sys.executable, "-m", "dockyard", "pull", f"{reg.host}/team/app:1"],
        env=dict(other, DOCKYARD_ROOT=str(tmp_path / "anon")),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert anonymous.returncode == 1
    assert "pull access denied for" in anonymous.stderr
    assert "may require 'docker login'" in anonymous.stderr


@pytest.fixture
def tls_registry(tmp_path: Path) -> Iterator[tuple[Registry, Path]]:
    ca_key, ca_cert, ca_path = make_ca(tmp_path / "ca")
    cert, key = make_server_cert(tmp_path / "ca", ca_key, ca_cert)
    reg = start_registry(tmp_path / "tls", tls=(cert, key))
    yield reg, ca_path
    reg.stop()


def test_tls_with_ca_in_certs_d(
    tls_registry: tuple[Registry, Path],
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    tmp_path: Path,
) -> None:
    reg, ca_path = tls_registry
    certs_d = tmp_path / "certs.d"
    (certs_d / reg.host).mkdir(parents=True)
    (certs_d / reg.host / "ca.crt").write_bytes(ca_path.read_bytes())
    dockyard_env["DOCKYARD_CERTS_D"] = str(certs_d)
    ref = f"{reg.host}/secure:latest"
    import_image(dockyard_env, busybox_tar, ref)
    proc = dy("push", ref)
    assert proc.returncode == 0, proc.stderr
    inspect = dy("manifest", "inspect", ref)
    assert inspect.returncode == 0, inspect.stderr

    # a CA that did not sign the server's certificate is refused
    _k, _c, wrong = make_ca(tmp_path / "other-ca", "someone else")
    (certs_d / reg.host / "ca.crt").write_bytes(wrong.read_bytes())
    proc = dy("pull", ref)
    assert proc.returncode == 1
    assert "certificate" in proc.stderr and reg.host in proc.stderr


def test_insecure_registry_configuration(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from dockyard.registry import tls

    tls.insecure_registries.cache_clear()
    monkeypatch.setenv("DOCKYARD_INSECURE_REGISTRIES", "reg.example:5000, 10.1.0.0/16")
    monkeypatch.setenv("DOCKYARD_ROOT", str(tmp_path))
    (tmp_path / "registries.json").write_text(json.dumps({"insecure-registries": ["other.test"]}))
    try:
        assert tls.is_insecure("localhost:5000") and tls.is_insecure("127.0.0.9:80")
        assert tls.is_insecure("[::1]:5000")
        assert tls.is_insecure("reg.example:5000") and not tls.is_insecure("reg.example:6000")
        assert tls.is_insecure("10.1.2.3:5000") and not tls.is_insecure("10.2.0.1")
        assert tls.is_insecure("other.test:443")
        assert not tls.is_insecure("registry.example.com")
        assert [e.scheme for e in tls.endpoints("other.test")] == ["https", "http"]
        assert [e.scheme for e in tls.endpoints("secure.test")] == ["https"]
    finally:
        tls.insecure_registries.cache_clear()


def test_unit_challenge_parsing_and_config_keys() -> None:
    from dockyard.registry.auth import hostname_of, normalize_server, parse_challenges

    [bearer] = parse_challenges(
        ['Bearer realm="https://auth.example/token",service="reg",scope="repository:a/b:pull"']
    )
    assert bearer.scheme == "bearer"
    assert bearer.params == {
        "realm": "https://auth.example/token",
        "service": "reg",
        "scope": "repository:a/b:pull",
    }
    [basic] = parse_challenges(['Basic realm="basic-realm"'])
    assert basic.scheme == "basic" and basic.params["realm"] == "basic-realm"
    assert hostname_of("https://host:5000/v1/") == "host:5000"
    assert normalize_server(None) == "https://index.docker.io/v1/"
    assert normalize_server("docker.io") == "https://index.docker.io/v1/"
    assert normalize_server("http://localhost:5000") == "localhost:5000"
    assert os.environ.get("DOCKER_CONFIG") is None or True


def test_identity_token_login_keeps_no_password(
    token_registry: tuple[Registry, TokenServer],
    dy,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    docker_config: Path,
) -> None:
    """A token server that hands out refresh tokens: login keeps one (no password, as
    Docker does) and later commands trade it for access tokens in an OAuth2 grant."""
    reg, server = token_registry
    server.offline = True
    assert login(dy, reg.host).returncode == 0
    entry = json.loads((docker_config / "config.json").read_text())["auths"][reg.host]
    assert entry["identitytoken"] in server.refresh_tokens
    assert base64.b64decode(entry["auth"]).decode() == f"{USER}:"  # the user, no password
    ref = f"{reg.host}/team/id:1"
    import_image(dockyard_env, busybox_tar, ref)
    server.requests.clear()
    proc = dy("push", ref)
    assert proc.returncode == 0, proc.stderr
    grants = [r for r in server.requests if r.get("method") == "POST"]
    assert grants and all(r["query"]["grant_type"] == ["refresh_token"] for r in grants)
    assert not any(r["auth"] for r in server.requests)  # the password is never sent again
    entry["identitytoken"] = "revoked"
    (docker_config / "config.json").write_text(json.dumps({"auths": {reg.host: entry}}))
    refused = dy("push", ref)
    assert refused.returncode == 1 and len(refused.stderr.strip().splitlines()) == 1
