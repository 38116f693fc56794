"""Compose file loading: discovery, interpolation, .env, merging, profiles, extends,
validation and normalization -- no containers needed."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from dockyard.compose.interpolate import InterpolationError, parse_dotenv, substitute
from dockyard.compose.loader import LoadOptions, load_project, normalize_name
from dockyard.compose.model import Project, config_hash
from dockyard.errors import DockyardError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, **kw: object) -> Project:
    kw.setdefault("environ", {})
    return load_project(LoadOptions(cwd=str(tmp_path), **kw))  # type: ignore[arg-type]


# -- interpolation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$A", "a"),
        ("${A}", "a"),
        ("x${A}y", "xay"),
        ("${UNSET:-def}", "def"),
        ("${EMPTY:-def}", "def"),
        ("${EMPTY-def}", ""),
        ("${UNSET-def}", "def"),
        ("${A:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("$$A", "$A"),
        ("$${A}", "${A}"),
        ("${UNSET:-${A}-x}", "a-x"),
        ("cost: 5$", "cost: 5$"),
        ("${UNSET}", ""),
    ],
)
def test_substitute(text: str, expected: str) -> None:
    env = {"A": "a", "EMPTY": ""}
    assert substitute(text, env.get) == expected


def test_substitute_required() -> None:
    env = {"EMPTY": ""}
    with pytest.raises(InterpolationError, match="required variable X is missing a value: give X"):
        substitute("${X:?give X}", env.get)
    with pytest.raises(InterpolationError, match="required variable EMPTY"):
        substitute("${EMPTY:?}", env.get)
    assert substitute("${EMPTY?oops}", env.get) == ""
    with pytest.raises(InterpolationError):
        substitute("${X?oops}", env.get)


def test_dotenv_format() -> None:
    text = textwrap.dedent(
        """\
        # comment
        A=1
        export B=two words  # a comment
        C='single $A literal'
        D="double $A\\nnext"
        E=${A}-${UNSET:-dflt}
        F
        G="multi
        line"
        """
    )
    values = parse_dotenv(text, {"F": "from-env"}.get)
    assert values["A"] == "1"
    assert values["B"] == "two words"
    assert values["C"] == "single $A literal"
    assert values["D"] == "double 1\nnext"
    assert values["E"] == "1-dflt"
    assert values["F"] is None
    assert values["G"] == "multi\nline"


def test_project_name_normalized() -> None:
    assert normalize_name("My_App.v2") == "my_appv2"
    assert normalize_name("-x-") == "x-"


# -- files, names, .env -------------------------------------------------------------------


def test_discovery_in_parent_and_override(tmp_path: Path) -> None:
    write(tmp_path / "proj/compose.yaml", "services:\n  web:\n    image: busybox\n")
    write(
        tmp_path / "proj/compose.override.yaml",
        "services:\n  web:\n    command: echo hi\n",
    )
    sub = tmp_path / "proj/deep/er"
    sub.mkdir(parents=True)
    project = load(sub)
    assert project.name == "proj"
    assert project.working_dir == str(tmp_path / "proj")
    assert project.services["web"]["command"] == ["echo", "hi"]
    assert len(project.config_files) == 2


def test_no_file(tmp_path: Path) -> None:
    with pytest.raises(DockyardError, match="no configuration file provided"):
        load(tmp_path)


def test_env_file_and_precedence(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        name: ${NAME:-fallback}
        services:
          web:
            image: ${IMAGE}
            environment:
              FROM_SHELL: ${SHELL_ONLY}
        """,
    )
    write(tmp_path / ".env", "IMAGE=busybox:dotenv\nSHELL_ONLY=dotenv\nNAME=fromenv\n")
    project = load(tmp_path, environ={"SHELL_ONLY": "shell"})
    assert project.name == "fromenv"
    assert project.services["web"]["image"] == "busybox:dotenv"
    assert project.services["web"]["environment"] == {"FROM_SHELL": "shell"}
    other = write(tmp_path / "other.env", "IMAGE=busybox:other\n")
    project = load(tmp_path, env_files=[str(other)], project_name="cli-name")
    assert project.services["web"]["image"] == "busybox:other"
    assert project.name == "cli-name"
    project = load(tmp_path, environ={"COMPOSE_PROJECT_NAME": "envname"})
    assert project.name == "envname"


def test_compose_file_variable_and_stdin(tmp_path: Path) -> None:
    write(tmp_path / "a.yml", "services:\n  a:\n    image: busybox\n")
    write(tmp_path / "b.yml", "services:\n  b:\n    image: busybox\n")
    project = load(tmp_path, environ={"COMPOSE_FILE": "a.yml:b.yml"})
    assert sorted(project.services) == ["a", "b"]
    project = load(tmp_path, files=["-"], stdin_text="services:\n  s:\n    image: x\n")
    assert list(project.services) == ["s"]
    assert project.working_dir == str(tmp_path)


# -- merging ------------------------------------------------------------------------------


def test_merge_rules(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            image: busybox
            command: ["echo", "base"]
            environment: [A=1, B=2]
            labels: {one: "1"}
            ports: ["8080:80", "9000:90"]
            volumes: ["./a:/data", "/cache"]
            dns: [1.1.1.1]
            healthcheck: {test: ["CMD", "true"], interval: 5s}
        """,
    )
    write(
        tmp_path / "over.yaml",
        """\
        services:
          web:
            command: echo override
            environment: {B: "3", C: "4"}
            labels: [two=2]
            ports: ["8081:80", "9000:90"]
            volumes: ["./b:/data"]
            dns: [8.8.8.8]
            healthcheck: {test: ["CMD", "false"]}
          db:
            image: busybox
        """,
    )
    project = load(tmp_path, files=["compose.yaml", "over.yaml"])
    web = project.services["web"]
    assert web["command"] == ["echo", "override"]
    assert web["environment"] == {"A": "1", "B": "3", "C": "4"}
    assert web["labels"] == {"one": "1", "two": "2"}
    published = sorted((p["published"], p["target"]) for p in web["ports"])
    assert published == [("8080", 80), ("8081", 80), ("9000", 90)]
    by_target = {v["target"]: v for v in web["volumes"]}
    assert by_target["/data"]["source"] == str(tmp_path / "b")
    assert "/cache" in by_target
    assert web["dns"] == ["1.1.1.1", "8.8.8.8"]
    assert web["healthcheck"] == {"test": ["CMD", "false"], "interval": "5s"}
    assert "db" in project.services


def test_reset_and_override_tags(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            image: busybox
            ports: ["8080:80"]
            environment: {A: "1", B: "2"}
        """,
    )
    write(
        tmp_path / "over.yaml",
        """\
        services:
          web:
            ports: !reset []
            environment: !override {C: "3"}
        """,
    )
    web = load(tmp_path, files=["compose.yaml", "over.yaml"]).services["web"]
    assert "ports" not in web
    assert web["environment"] == {"C": "3"}


def test_extends(tmp_path: Path) -> None:
    write(
        tmp_path / "common/base.yaml",
        """\
        services:
          base:
            image: busybox
            environment: {LEVEL: base, KEEP: "1"}
            volumes: ["./shared:/shared"]
        """,
    )
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            extends: {file: common/base.yaml, service: base}
            environment: {LEVEL: web}
          worker:
            extends: web
            command: work
        """,
    )
    project = load(tmp_path)
    web = project.services["web"]
    assert web["environment"] == {"LEVEL": "web", "KEEP": "1"}
    assert web["volumes"][0]["source"] == str(tmp_path / "common/shared")
    assert project.services["worker"]["command"] == ["work"]
    assert project.services["worker"]["environment"]["LEVEL"] == "web"


def test_include(tmp_path: Path) -> None:
    """compose-spec's include: each application loaded on its own (paths, .env), its
    resources copied in, nested includes too, conflicting definitions refused."""
    write(tmp_path / "db/.env", "DB_TAG=15\nPORT=1\n")
    write(
        tmp_path / "db/compose.yaml",
        """\
        include: [../cache/compose.yaml]
        services:
          db:
            image: postgres:${DB_TAG}
            ports: ["${PORT}:5432"]
            volumes: ["./init:/docker-entrypoint-initdb.d", "pgdata:/var/lib/postgresql/data"]
            env_file: [db.env]
        volumes:
          pgdata:
        secrets:
          pw: {file: ./pw.txt}
        """,
    )
    write(tmp_path / "db/db.env", "A=1\n")
    write(tmp_path / "cache/compose.yaml", "services:\n  cache:\n    image: redis\n")
    write(
        tmp_path / "compose.yaml",
        """\
        include:
          - db/compose.yaml
        services:
          app:
            image: app
            depends_on: [db, cache]
        """,
    )
    project = load(tmp_path, environ={"PORT": "6543"})  # the local environment wins
    db = project.services["db"]
    assert db["image"] == "postgres:15"  # from db/.env
    assert db["ports"][0]["published"] == "6543"
    assert db["volumes"][0]["source"] == str(tmp_path / "db/init")  # its own directory
    assert set(project.services) == {"app", "db", "cache"}
    assert "pgdata" in project.volumes
    write(
        tmp_path / "compose.yaml",
        """\
        include:
          - path: db/compose.yaml
            env_file: other.env
        services:
          cache:
            image: memcached
        """,
    )
    write(tmp_path / "other.env", "DB_TAG=16\nPORT=2\n")
    with pytest.raises(DockyardError, match="services.cache conflicts with imported resource"):
        load(tmp_path)
    write(
        tmp_path / "compose.yaml", "include:\n  - path: db/compose.yaml\n    env_file: other.env\n"
    )
    assert load(tmp_path).services["db"]["image"] == "postgres:16"


# -- profiles and dependencies --------------------------------------------------------------


def test_profiles(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web: {image: busybox}
          debug: {image: busybox, profiles: [dev]}
          tool: {image: busybox, profiles: [tools], depends_on: [web]}
        """,
    )
    project = load(tmp_path)
    assert project.select(None) == ["web"]
    assert sorted(project.select(["tool"])) == ["tool", "web"]
    project = load(tmp_path, profiles=["dev"])
    assert sorted(project.select(None)) == ["debug", "web"]
    project = load(tmp_path, environ={"COMPOSE_PROFILES": "dev,tools"})
    assert len(project.select(None)) == 3
    assert project.to_config()["services"].keys() == {"debug", "tool", "web"}


def test_dependency_order(tmp_path: Path) -> None:
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          c: {image: x, depends_on: {b: {condition: service_healthy}}}
          b: {image: x, depends_on: [a]}
          a: {image: x}
          d: {image: x, network_mode: "service:a"}
        """,
    )
    project = load(tmp_path)
    order = project.select(None)
    assert order.index("a") < order.index("b") < order.index("c")
    assert order.index("a") < order.index("d")
    assert project.services["c"]["depends_on"]["b"] == {
        "condition": "service_healthy",
        "required": True,
        "restart": False,
    }


# -- normalization and config -------------------------------------------------------------


def test_normalized_service(tmp_path: Path) -> None:
    write(tmp_path / "web.env", "FROM_FILE=1\nOVERRIDDEN=file\n")
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            build: ./app
            command: sh -c "echo 'a b'"
            env_file: web.env
            environment: [OVERRIDDEN=service, PASSED]
            ports: ["127.0.0.1:8000-8001:80-81/udp", 9000, {target: 70, published: "7070"}]
            volumes:
              - data:/data:ro
              - ./src:/src
              - type: tmpfs
                target: /tmp/t
                tmpfs: {size: 1m}
            extra_hosts: ["gw=10.0.0.1"]
            healthcheck: {test: "true", retries: "3"}
            read_only: "true"
            scale: "2"
        volumes:
          data: {}
        """,
    )
    project = load(tmp_path, environ={"PASSED": "yes"}, project_name="p")
    web = project.services["web"]
    assert web["build"] == {"context": str(tmp_path / "app"), "dockerfile": "Dockerfile"}
    assert web["command"] == ["sh", "-c", "echo 'a b'"]
    assert web["environment"] == {"FROM_FILE": "1", "OVERRIDDEN": "service", "PASSED": "yes"}
    assert web["ports"][0] == {
        "mode": "ingress",
        "host_ip": "127.0.0.1",
        "target": 80,
        "published": "8000",
        "protocol": "udp",
    }
    assert [p["target"] for p in web["ports"]] == [80, 81, 9000, 70]
    assert "published" not in web["ports"][2]
    assert web["volumes"][0] == {
        "type": "volume",
        "source": "data",
        "target": "/data",
        "read_only": True,
    }
    assert web["volumes"][1]["source"] == str(tmp_path / "src")
    assert web["extra_hosts"] == ["gw:10.0.0.1"]
    assert web["healthcheck"]["test"] == ["CMD-SHELL", "true"]
    assert web["read_only"] is True and web["scale"] == 2
    assert project.volumes["data"]["name"] == "p_data"
    assert project.networks["default"]["name"] == "p_default"
    assert project.image_name("web") == "p-web"
    assert project.scale("web") == 2


def test_config_hash_ignores_scale_and_build(tmp_path: Path) -> None:
    base = {"image": "busybox", "command": ["a"]}
    assert config_hash(base) == config_hash({**base, "scale": 3, "build": {"context": "/x"}})
    assert config_hash(base) != config_hash({**base, "command": ["b"]})


def test_config_command(dy, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    write(
        tmp_path / "compose.yaml",
        """\
        services:
          web:
            image: busybox
            ports: ["${PORT:-8080}:80"]
          cache:
            image: busybox
        volumes:
          data:
        """,
    )
    out = dy("compose", "--project-directory", str(tmp_path), "config", check=True).stdout
    assert out.startswith(f"name: {tmp_path.name.lower()}\n")
    assert "published: '8080'" in out or 'published: "8080"' in out
    services = dy(
        "compose", "-f", str(tmp_path / "compose.yaml"), "config", "--services", check=True
    )
    assert services.stdout.split() == ["cache", "web"]
    volumes = dy("compose", "-f", str(tmp_path / "compose.yaml"), "config", "--volumes", check=True)
    assert volumes.stdout.split() == ["data"]
    quiet = dy("compose", "-f", str(tmp_path / "compose.yaml"), "config", "-q", check=True)
    assert quiet.stdout == ""
