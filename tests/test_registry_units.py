"""Registry pieces that need no server: manifests, platforms, progress, gzip, credentials."""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dockyard.registry import auth
from dockyard.registry.auth import RegistryError
from dockyard.registry.compress import gzip_stream
from dockyard.registry.manifest import (
    DOCKER_LAYER,
    OCI_LAYER_ZSTD,
    Descriptor,
    Platform,
    build_manifest,
    choose,
    parse_manifest,
    parse_platform,
)
from dockyard.registry.progress import Progress, human_size, render_bar


def _index(*platforms: dict[str, str]) -> bytes:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + f"{i:x}" * 64,
                    "size": 1,
                    "platform": p,
                }
                for i, p in enumerate(platforms, start=1)
            ],
        }
    ).encode()


def test_platform_choice() -> None:
    index = parse_manifest(
        _index(
            {"os": "unknown", "architecture": "unknown"},
            {"os": "linux", "architecture": "arm", "variant": "v6"},
            {"os": "linux", "architecture": "arm", "variant": "v7"},
            {"os": "linux", "architecture": "arm64", "variant": "v8"},
            {"os": "linux", "architecture": "amd64"},
        )
    )
    assert index.is_index
    assert choose(index, Platform("linux", "amd64")).digest == "sha256:" + "5" * 64
    assert choose(index, parse_platform("linux/arm64")).digest == "sha256:" + "4" * 64
    assert choose(index, parse_platform("linux/arm/v7")).digest == "sha256:" + "3" * 64
    assert choose(index, parse_platform("arm64")).platform == {
        "os": "linux",
        "architecture": "arm64",
        "variant": "v8",
    }
    with pytest.raises(RegistryError, match="no matching manifest for linux/s390x"):
        choose(index, parse_platform("linux/s390x"))


def test_manifest_types() -> None:
    with pytest.raises(RegistryError, match="schema version 1"):
        parse_manifest(b'{"schemaVersion": 1, "fsLayers": []}')
    with pytest.raises(RegistryError, match="unsupported manifest media type"):
        parse_manifest(b'{"schemaVersion": 2, "mediaType": "application/x-nope"}')
    config = Descriptor("", "sha256:" + "c" * 64, 10)
    layer = Descriptor(DOCKER_LAYER, "sha256:" + "a" * 64, 5)
    raw = build_manifest(config, [layer])
    parsed = parse_manifest(raw)
    assert parsed.media_type == "application/vnd.docker.distribution.manifest.v2+json"
    assert parsed.layers == [layer]
    assert raw.startswith(b'{\n   "schemaVersion": 2,')  # Docker's three-space indent
    oci = parse_manifest(build_manifest(config, [Descriptor(OCI_LAYER_ZSTD, layer.digest, 5)]))
    assert oci.media_type == "application/vnd.oci.image.manifest.v1+json"


def test_progress_plain_and_tty() -> None:
    out = io.StringIO()
    plain = Progress(out, tty=False)
    plain.status("abc123def456", "Pulling fs layer")
    plain.bar("abc123def456", "Downloading", 10, 100)  # not shown without a terminal
    plain.status("abc123def456", "Pull complete")
    plain.line("Digest: sha256:x")
    assert out.getvalue() == (
        "abc123def456: Pulling fs layer\nabc123def456: Pull complete\nDigest: sha256:x\n"
    )
    out = io.StringIO()
    tty = Progress(out, tty=True)
    tty.status("aaa", "Pulling fs layer")
    tty.status("bbb", "Pulling fs layer")
    tty.bar("aaa", "Downloading", 1_200_000, 10_000_000, final=True)
    text = out.getvalue()
    assert "\x1b[2A\x1b[2K\raaa: Downloading [======>" in text
    assert "  1.2MB/10MB" in text
    assert human_size(1_234_567) == "1.235MB" and human_size(999) == "999B"
    assert render_bar(50, 100, width=80) == "     50B/100B"
    quiet = io.StringIO()
    Progress(quiet, quiet=True).line("x")
    assert quiet.getvalue() == ""


@pytest.mark.parametrize("size", [0, 1, 70_000, 3 * 1024 * 1024 + 17])
def test_gzip_stream_is_standard_and_deterministic(size: int, tmp_path: Path) -> None:
    data = (os.urandom(size // 2) + b"text " * (size // 10))[:size]
    out = b"".join(gzip_stream(io.BytesIO(data)))
    assert gzip.decompress(out) == data
    assert b"".join(gzip_stream(io.BytesIO(data))) == out
    if shutil.which("gzip"):
        path = tmp_path / "x.gz"
        path.write_bytes(out)
        assert subprocess.run(["gzip", "-t", str(path)]).returncode == 0


def test_config_json_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    (tmp_path / "config.json").write_text(
        json.dumps({"auths": {"https://index.docker.io/v1/": {"auth": "dTpw"}}, "x": 1})
    )
    creds = auth.get_credentials("docker.io")
    assert creds is not None and (creds.username, creds.password) == ("u", "p")
    assert auth.get_credentials("example.com") is None
    assert auth.store_credentials("example.com:5000", auth.Credentials("me", "pw:x")) is False
    data = json.loads((tmp_path / "config.json").read_text())
    assert data["x"] == 1
    assert base64.b64decode(data["auths"]["example.com:5000"]["auth"]) == b"me:pw:x"
    got = auth.get_credentials("example.com:5000")
    assert got is not None and got.password == "pw:x"
    assert auth.erase_credentials("example.com:5000") is True
    assert auth.erase_credentials("example.com:5000") is False


def test_token_fetch_sends_scopes_and_basic_auth() -> None:
    seen: dict[str, object] = {}

    def http_get(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        seen["url"], seen["headers"] = url, headers
        return 200, b'{"access_token": "tok", "expires_in": 300}'

    [challenge] = auth.parse_challenges(['Bearer realm="http://a/token",service="reg"'])
    token = auth.fetch_token(
        challenge,
        ["repository:x:pull,push", "repository:y:pull"],
        auth.Credentials("u", "p"),
        http_get,
    )
    assert token.value == "tok"
    url = str(seen["url"])
    assert url.startswith("http://a/token?service=reg&scope=repository%3Ax%3Apull%2Cpush")
    assert "scope=repository%3Ay%3Apull" in url and "account=u" in url
    assert seen["headers"] == {"Authorization": "Basic dTpw"}

    def refuse(url: str, headers: dict[str, str]) -> tuple[int, bytes]:
        return 401, b'{"details": "incorrect username or password"}'

    with pytest.raises(auth.Unauthorized, match="unauthorized: incorrect username or password"):
        auth.fetch_token(challenge, [], auth.Credentials("u", "bad"), refuse)
