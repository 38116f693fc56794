"""Bad Compose input: one clear line on stderr, a non-zero exit, nothing created."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest

CASES = {
    "yaml": (
        "services:\n  web:\n    image: busybox\n   ports: [\n",
        ["line 4, column 4"],
    ),
    "schema-type": (
        "services:\n  web:\n    image: busybox\n    ports:\n      - {target: http}\n",
        ["services.web.ports[0].target must be an integer", "line 5"],
    ),
    "schema-unknown-key": (
        "services:\n  web:\n    image: busybox\n    restart_policy: always\n",
        ["services.web", "'restart_policy' is not allowed"],
    ),
    "cycle": (
        "services:\n  a:\n    image: busybox\n    depends_on: [b]\n"
        "  b:\n    image: busybox\n    depends_on: [a]\n",
        ["dependency cycle detected: a -> b -> a"],
    ),
    "undefined-dependency": (
        "services:\n  web:\n    image: busybox\n    depends_on: [db]\n",
        ['service "web" depends on undefined service "db"'],
    ),
    "missing-env-file": (
        "services:\n  web:\n    image: busybox\n    env_file: missing.env\n",
        ["env file", "missing.env not found"],
    ),
    "required-variable": (
        "services:\n  web:\n    image: ${WEB_IMAGE:?set WEB_IMAGE first}\n",
        [
            "services.web.image",
            "required variable WEB_IMAGE is missing a value: set WEB_IMAGE first",
        ],
    ),
    "undefined-volume": (
        "services:\n  web:\n    image: busybox\n    volumes: [data:/data]\n",
        ['service "web" refers to undefined volume data'],
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_starts_nothing(case: str, dy: Any, busybox_image: str, tmp_path: Path) -> None:
    text, expected = CASES[case]
    project = tmp_path / "badproj"
    project.mkdir()
    (project / "compose.yaml").write_text(textwrap.dedent(text))
    try:
        for command in (["up", "-d"], ["config"]):
            proc = dy("compose", "--project-directory", str(project), *command)
            assert proc.returncode != 0, proc.stdout
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1, proc.stderr
            for fragment in expected:
                assert fragment in lines[0], lines[0]
        assert dy("ps", "-aq").stdout.strip() == ""
        assert "badproj_default" not in dy("network", "ls").stdout
        assert dy("volume", "ls", "-q").stdout.strip() == ""
    finally:
        dy("compose", "-p", "badproj", "down", "-v")


def test_unknown_service_on_command_line(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    (tmp_path / "compose.yaml").write_text("services:\n  web:\n    image: busybox\n")
    proc = dy("compose", "-f", str(tmp_path / "compose.yaml"), "up", "-d", "nope")
    assert proc.returncode != 0
    assert "no such service: nope" in proc.stderr
    assert dy("ps", "-aq").stdout.strip() == ""


def test_dependency_failure_is_reported(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    """A dependency that exits non-zero stops its dependents from starting."""
    (tmp_path / "compose.yaml").write_text(
        textwrap.dedent(
            """\
            name: depfail
            services:
              init:
                image: busybox
                command: ["sh", "-c", "exit 4"]
              app:
                image: busybox
                command: ["sleep", "30"]
                depends_on:
                  init: {condition: service_completed_successfully}
            """
        )
    )
    compose = ["compose", "-f", str(tmp_path / "compose.yaml")]
    try:
        proc = dy(*compose, "up", "-d")
        assert proc.returncode != 0
        assert 'service "init" didn\'t complete successfully: exit 4' in proc.stderr
        running = dy(*compose, "ps", "--services").stdout.split()
        assert "app" not in running
    finally:
        dy(*compose, "down", "-v", "-t", "1")
