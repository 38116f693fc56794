"""``compose build``, ``push`` and ``pull`` against a real docker-registry on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from test_registry_support import (  # noqa: F401 - fixtures
    Registry,
    docker_config_fixture,
    needs_registry,
    registry_fixture,
)

pytestmark = [
    needs_registry,
    pytest.mark.usefixtures("docker_config"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for containers"),
]


def test_build_push_pull_up(
    registry: Registry, dy: Any, dockyard_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    proj = tmp_path / "shipit"
    (proj / "app").mkdir(parents=True)
    (proj / "app/Dockerfile").write_text(
        'FROM busybox\nARG GREETING=none\nRUN echo "$GREETING" > /greeting\n'
        'CMD ["cat", "/greeting"]\n'
    )
    (proj / "compose.yaml").write_text(
        textwrap.dedent(
            f"""\
            services:
              app:
                image: {registry.host}/shipit/app:1
                build:
                  context: ./app
                  args: {{GREETING: hello-from-build}}
                  labels: {{org.example.team: ships}}
            """
        )
    )
    compose = ["compose", "--project-directory", str(proj)]
    built = dy(*compose, "build", check=True)
    assert "Built" in built.stderr
    labels = dy("image", "inspect", "--format", "{{json .Config.Labels}}",
                f"{registry.host}/shipit/app:1", check=True).stdout  # fmt: skip
    assert '"com.docker.compose.project":"shipit"' in labels
    assert '"org.example.team":"ships"' in labels
    dy(*compose, "push", check=True)

    other = dict(dockyard_env)
    other["DOCKYARD_ROOT"] = str(tmp_path / "other/root")
    other["DOCKYARD_RUNROOT"] = str(tmp_path / "other/run")

    def dy2(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "dockyard", *args], env=other,
                              capture_output=True, text=True, timeout=120)  # fmt: skip

    try:
        pulled = dy2(*compose, "pull")
        assert pulled.returncode == 0, pulled.stderr
        up = dy2(*compose, "up", "--no-build", "--exit-code-from", "app")
        assert up.returncode == 0, up.stderr
        assert "app-1  | hello-from-build" in up.stdout
    finally:
        dy2(*compose, "down", "-v")
        from conftest import _cleanup_store

        _cleanup_store(other)
        dy(*compose, "down", "-v")
