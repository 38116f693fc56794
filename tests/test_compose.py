"""``dockyard compose`` with real containers: the course's example, the lab's flow,
naming and labels, recreate on change, scale, down's isolation, attached ``up``.

Images are built from the busybox test image (``dockyard build``), so nothing needs a
registry. Every test ends with ``compose down -v`` and the store fixture's cleanup.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for containers")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(port: int, path: str = "/") -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
        return str(response.read().decode())


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """The first truthy result of check(), retried until the timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except (OSError, AssertionError, subprocess.SubprocessError) as err:
            last = err
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what or check}: {last!r}")


class Compose:
    """``dockyard compose`` for one project directory (and its -f files)."""

    def __init__(self, dy: Any, directory: Path, files: list[str] | None = None,
                 name: str | None = None) -> None:  # fmt: skip
        self.dy = dy
        self.directory = directory
        self.files = files or []
        self.name = name

    def args(self) -> list[str]:
        out = ["compose", "--project-directory", str(self.directory)]
        for f in self.files:
            out += ["-f", str(self.directory / f)]
        if self.name:
            out += ["-p", self.name]
        return out

    def __call__(self, *args: str, check: bool = True, timeout: float = 120) -> Any:
        return self.dy(*self.args(), *args, check=check, timeout=timeout)

    def with_files(self, *files: str) -> Compose:
        return Compose(self.dy, self.directory, list(files), self.name)


@contextmanager
def project(dy: Any, directory: Path, name: str | None = None) -> Iterator[Compose]:
    compose = Compose(dy, directory, name=name)
    try:
        yield compose
    finally:
        compose("down", "-v", "-t", "1", "--remove-orphans", check=False)


def inspect(dy: Any, ref: str) -> dict[str, Any]:
    return dict(json.loads(dy("inspect", ref, check=True).stdout)[0])


def container_ids(dy: Any) -> dict[str, str]:
    out = dy("ps", "-a", "--format", "{{.Names}} {{.ID}}", check=True).stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


# -- the course's example -----------------------------------------------------------------


REDIS_DOCKERFILE = """\
FROM busybox
CMD ["sh", "-c", "while true; do echo +PONG | nc -l -p 6379; done"]
"""

APP_PY = """\
# VERSION=1
# a stand-in for the Streamlit app: serves what it sees, reaching redis by name
mkdir -p /www
while true; do
  { grep '^# VERSION' /code/app.py; echo "redis: $(echo PING | nc -w 1 redis 6379)"; } > /www/next
  mv /www/next /www/index.html
  sleep 0.2
done &
exec httpd -f -p 8501 -h /www
"""


def test_course_example(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    app = tmp_path / "ml-course"
    write(app / "redis/Dockerfile", REDIS_DOCKERFILE)
    dy("build", "-q", "-t", "redis", str(app / "redis"), check=True)
    write(app / "app.py", APP_PY)
    write(app / "data.py", "# data\n")
    write(app / "models.py", "# models\n")
    write(
        app / "Dockerfile",
        """\
        FROM busybox
        WORKDIR /code
        COPY app.py data.py models.py /code/
        CMD ["sh", "app.py"]
        """,
    )
    redis_port, app_port = free_port(), free_port()
    write(app / ".env", f"REDIS_PORT={redis_port}\nAPP_PORT={app_port}\n")
    write(
        app / "compose.yaml",
        """\
        services:
          redis:
            image: redis
            ports:
              - '${REDIS_PORT}:6379'
            stop_grace_period: 1s
          ml-app:
            build: .
            ports:
              - '${APP_PORT}:8501'
            depends_on:
              - redis
            volumes:
              - ./app.py:/code/app.py
              - ./data.py:/code/data.py
              - ./models.py:/code/models.py
            stop_grace_period: 1s
        """,
    )
    with project(dy, app) as compose:
        compose("up", "-d")
        page = eventually(lambda: "+PONG" in http_get(app_port) and http_get(app_port))
        assert "# VERSION=1" in page and "redis: +PONG" in page
        # an edit on the host (same inode, as editors that write in place) is seen live
        (app / "app.py").write_text(APP_PY.replace("VERSION=1", "VERSION=2"))
        eventually(lambda: "VERSION=2" in http_get(app_port), what="edited app.py")
        seen = compose("exec", "-T", "ml-app", "head", "-1", "/code/app.py").stdout
        assert seen.strip() == "# VERSION=2"

        # the published redis port answers on 127.0.0.1 too
        def pong() -> bool:
            with socket.create_connection(("127.0.0.1", redis_port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                return b"+PONG" in s.recv(100)

        eventually(pong, what="redis on 127.0.0.1")
        ps = compose("ps").stdout
        assert "ml-course-ml-app-1" in ps and "ml-course-redis-1" in ps
        assert f"0.0.0.0:{app_port}->8501/tcp" in ps
        image = inspect(dy, "ml-course-ml-app-1")["Config"]["Image"]
        assert image == "ml-course-ml-app"


# -- the lab's flow -------------------------------------------------------------------------

API_SH = """\
# the lab's API: serves its data file and where the database is
mkdir -p /www
echo "db=${DB_HOST:-none}" > /www/config
while true; do cp /data/items.txt /www/items 2>/dev/null; sleep 0.2; done &
exec httpd -f -p 8000 -h /www
"""

LAB_TEST_FILE = """\
services:
  api:
    environment:
      DB_HOST: db
    depends_on: [db]
  db:
    image: busybox
    command:
      - sh
      - -c
      - |
        [ -f /var/lib/db/created ] || echo "db-$$RANDOM-$$(date +%s%N)" > /var/lib/db/created
        while true; do nc -l -p 5432 < /var/lib/db/created; done
    volumes: ["dbdata:/var/lib/db"]
    stop_grace_period: 1s
  tests:
    image: lab-api:latest
    command:
      - sh
      - -c
      - >-
        wget -q -O- http://api:8000/items | grep -q banana &&
        wget -q -O- http://api:8000/config | grep -q db=db &&
        nc db 5432 </dev/null | grep -q db- && exit 3
    depends_on:
      api:
        condition: service_healthy
volumes:
  dbdata:
"""


def test_lab_flow(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    write(lab / "api.sh", API_SH)
    write(lab / "Dockerfile", 'FROM busybox\nCOPY api.sh /api.sh\nCMD ["sh", "/api.sh"]\n')
    write(lab / "data/items.txt", "apple\n")
    port = free_port()
    write(
        lab / "compose.yaml",
        f"""\
        services:
          api:
            build: .
            image: lab-api:latest
            ports: ["127.0.0.1:{port}:8000"]
            volumes: ["./data:/data"]
            stop_grace_period: 1s
            healthcheck:
              test: ["CMD-SHELL", "wget -q -O- http://127.0.0.1:8000/config"]
              interval: 1s
              timeout: 2s
              retries: 20
        """,
    )
    write(lab / "compose.test.yaml", LAB_TEST_FILE)
    with project(dy, lab) as compose:
        compose("up", "-d")
        eventually(lambda: "apple" in http_get(port, "/items"))
        compose("exec", "-T", "api", "sh", "-c", "echo banana >> /data/items.txt")
        assert (lab / "data/items.txt").read_text() == "apple\nbanana\n"
        compose("down")
        assert "lab-api-1" not in container_ids(dy)
        compose("up", "-d")
        eventually(lambda: "banana" in http_get(port, "/items"), what="data after down/up")
        assert "db=none" in http_get(port, "/config")

        both = compose.with_files("compose.yaml", "compose.test.yaml")
        run = both("up", "--exit-code-from", "tests", check=False, timeout=180)
        assert run.returncode == 3, run.stdout + run.stderr
        assert re.search(r"^tests-1 +\| ", run.stdout, re.M) is None  # tests print nothing
        assert "tests-1 exited with code 3" in run.stdout
        assert "lab_dbdata" in dy("volume", "ls", "-q", check=True).stdout
        labels = inspect(dy, "lab-api-1")["Config"]["Labels"]
        assert labels["com.docker.compose.depends_on"] == "db:service_started:false"
        assert labels["com.docker.compose.project.config_files"] == ",".join(
            [str(lab / "compose.yaml"), str(lab / "compose.test.yaml")]
        )

        def marker() -> str:
            both("up", "-d", "db")
            return str(
                eventually(lambda: both("exec", "-T", "db", "cat", "/var/lib/db/created").stdout)
            )

        first = marker()
        both("down")
        assert "lab_dbdata" in dy("volume", "ls", "-q", check=True).stdout
        assert marker() == first  # the named volume survived down
        both("down", "-v")
        assert "lab_dbdata" not in dy("volume", "ls", "-q", check=True).stdout
        assert marker() != first  # a new, empty volume
        both("down", "-v")


# -- naming, labels, recreate, scale ----------------------------------------------------------


def test_names_labels_and_recreate(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    proj = tmp_path / "Recreate.Demo"
    compose_file = """\
        services:
          base:
            image: busybox
            command: ["sleep", "300"]
            environment: {LEVEL: "${LEVEL:-1}"}
            volumes: ["store:/store"]
            stop_grace_period: 1s
          dependent:
            image: busybox
            command: ["sleep", "300"]
            depends_on: [base]
            stop_grace_period: 1s
          alone:
            image: busybox
            command: ["sleep", "300"]
            stop_grace_period: 1s
        volumes:
          store:
        """
    write(proj / "compose.yaml", compose_file)
    with project(dy, proj) as compose:
        compose("up", "-d")
        first = container_ids(dy)
        assert set(first) == {
            "recreatedemo-base-1",
            "recreatedemo-dependent-1",
            "recreatedemo-alone-1",
        }
        info = inspect(dy, "recreatedemo-base-1")
        labels = info["Config"]["Labels"]
        assert labels["com.docker.compose.project"] == "recreatedemo"
        assert labels["com.docker.compose.service"] == "base"
        assert labels["com.docker.compose.container-number"] == "1"
        assert labels["com.docker.compose.oneoff"] == "False"
        assert re.fullmatch(r"[0-9a-f]{64}", labels["com.docker.compose.config-hash"])
        assert labels["com.docker.compose.project.working_dir"] == str(proj)
        assert labels["com.docker.compose.image"].startswith("sha256:")
        assert labels["com.docker.compose.version"]
        assert "recreatedemo_default" in info["NetworkSettings"]["Networks"]
        net = json.loads(dy("network", "inspect", "recreatedemo_default", check=True).stdout)[0]
        assert net["Labels"]["com.docker.compose.network"] == "default"
        assert net["Labels"]["com.docker.compose.project"] == "recreatedemo"
        vol = json.loads(dy("volume", "inspect", "recreatedemo_store", check=True).stdout)[0]
        assert vol["Labels"]["com.docker.compose.volume"] == "store"
        # the service name resolves on the project network
        out = compose("exec", "-T", "dependent", "nslookup", "base").stdout
        assert "Address" in out

        compose("up", "-d")
        assert container_ids(dy) == first  # unchanged file: containers left alone

        write(proj / ".env", "LEVEL=2\n")
        compose("up", "-d")
        second = container_ids(dy)
        assert second["recreatedemo-base-1"] != first["recreatedemo-base-1"]
        assert second["recreatedemo-dependent-1"] != first["recreatedemo-dependent-1"]
        assert second["recreatedemo-alone-1"] == first["recreatedemo-alone-1"]
        assert set(second) == set(first)  # the replaced ones are gone

        compose("up", "-d", "--scale", "alone=3")
        names = container_ids(dy)
        assert {"recreatedemo-alone-2", "recreatedemo-alone-3"} <= set(names)
        assert names["recreatedemo-alone-1"] == first["recreatedemo-alone-1"]
        assert set(compose("ps", "--services").stdout.split()) == {"base", "dependent", "alone"}
        compose("up", "-d")
        assert "recreatedemo-alone-3" not in container_ids(dy)
        compose("up", "-d", "--force-recreate", "alone")
        assert container_ids(dy)["recreatedemo-alone-1"] != first["recreatedemo-alone-1"]


def test_down_touches_only_its_project(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    proj = tmp_path / "shared"
    write(
        proj / "compose.yaml",
        """\
        services:
          app:
            image: busybox
            command: ["sleep", "300"]
            volumes: ["data:/data"]
            stop_grace_period: 1s
        volumes:
          data:
        """,
    )
    dy("volume", "create", "unrelated", check=True)
    dy("run", "-d", "--name", "outsider", busybox_image, "sleep", "300", check=True)
    try:
        with project(dy, proj, name="one") as one, project(dy, proj, name="two") as two:
            one("up", "-d")
            two("up", "-d")
            one("down", "-v")
            names = container_ids(dy)
            assert "one-app-1" not in names
            assert {"two-app-1", "outsider"} <= set(names)
            volumes = dy("volume", "ls", "-q", check=True).stdout.split()
            assert "one_data" not in volumes
            assert {"two_data", "unrelated"} <= set(volumes)
            networks = dy("network", "ls", "--format", "{{.Name}}", check=True).stdout.split()
            assert "one_default" not in networks and "two_default" in networks
            listed = dy("compose", "ls", check=True).stdout
            assert "two" in listed and "running(1)" in listed
    finally:
        dy("rm", "-f", "outsider")
        dy("volume", "rm", "unrelated")


# -- attached up, logs, exec, run --------------------------------------------------------------


def test_attached_up_streams_and_stops_on_ctrl_c(
    dy: Any, dockyard_env: dict[str, str], busybox_image: str, tmp_path: Path
) -> None:
    proj = tmp_path / "attached"
    write(
        proj / "compose.yaml",
        """\
        services:
          web:
            image: busybox
            command: ["sh", "-c", "echo web says hello; exec sleep 300"]
            stop_grace_period: 1s
          worker:
            image: busybox
            command: ["sh", "-c", "echo worker ready; exec sleep 300"]
            stop_grace_period: 1s
        """,
    )
    with project(dy, proj) as compose:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dockyard", *compose.args(), "up", "--no-color"],
            env=dockyard_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: list[str] = []
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not (
                any(line.startswith("web-1     | web says hello") for line in lines)
                and any(line.startswith("worker-1  | worker ready") for line in lines)
            ):
                line = proc.stdout.readline()
                if not line:
                    break
                lines.append(line)
            assert any(line.startswith("web-1     | web says hello") for line in lines), lines
            assert any(line.startswith("worker-1  | worker ready") for line in lines), lines
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, err
        assert "Gracefully stopping" in err
        ps = compose("ps", "-a", "--format", "{{.Name}} {{.State}}").stdout
        assert "attached-web-1 exited" in ps and "attached-worker-1 exited" in ps

        logs = compose("logs", "--no-color", "web").stdout
        assert logs.splitlines() == ["web-1  | web says hello"]
        plain = compose("logs", "--no-log-prefix", "--tail", "1").stdout.split("\n")
        assert {"web says hello", "worker ready"} == {x for x in plain if x}


def test_exec_run_and_wait(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    proj = tmp_path / "tools"
    write(
        proj / "compose.yaml",
        """\
        services:
          svc:
            image: busybox
            command: ["sleep", "300"]
            environment: {GREETING: hello}
            stop_grace_period: 1s
            healthcheck:
              test: ["CMD", "true"]
              interval: 1s
          debug:
            image: busybox
            command: ["sleep", "300"]
            profiles: [dev]
            stop_grace_period: 1s
        """,
    )
    with project(dy, proj) as compose:
        assert compose("up", "-d", "--wait").returncode == 0
        assert "(healthy)" in compose("ps").stdout
        assert "debug" not in compose("ps", "--services").stdout
        proc = compose("exec", "-T", "svc", "sh", "-c", "echo $GREETING; exit 7", check=False)
        assert (proc.returncode, proc.stdout) == (7, "hello\n")
        proc = compose("run", "--rm", "-T", "-e", "EXTRA=1", "svc", "sh", "-c",
                       "echo $GREETING $EXTRA; exit 5", check=False)  # fmt: skip
        assert (proc.returncode, proc.stdout.strip()) == (5, "hello 1")
        assert not any("-svc-run-" in n for n in container_ids(dy))  # --rm removed it
        name = compose("run", "-d", "svc", "sleep", "300").stdout.strip()
        assert re.fullmatch(r"tools-svc-run-[0-9a-f]{12}", name)
        assert inspect(dy, name)["Config"]["Labels"]["com.docker.compose.oneoff"] == "True"
        dy("compose", "--project-directory", str(proj), "--profile", "dev", "up", "-d", check=True)
        assert "tools-debug-1" in container_ids(dy)
        compose("stop", "svc")
        state = compose("ps", "-a", "--format", "{{.Service}} {{.State}}").stdout
        assert "svc exited" in state and "debug running" in state
        compose("start", "svc")
        state = compose("ps", "--format", "{{.Service}} {{.State}}").stdout
        assert "svc running" in state


def test_recreate_keeps_anonymous_volumes(dy: Any, busybox_image: str, tmp_path: Path) -> None:
    """As Compose: a recreated service keeps its anonymous volumes (an image VOLUME, as a
    database image declares, or a bare ``- /path``), unless ``up -V``; ``down -v`` removes them."""
    dy("commit", "--change", "VOLUME /var/lib/db", dy("create", busybox_image).stdout.strip(),
       "dbimage:latest", check=True)  # fmt: skip
    proj = tmp_path / "keepdata"
    compose_file = """\
        services:
          db:
            image: dbimage:latest
            command: ["sh", "-c", "test -f /var/lib/db/x || echo ${GEN:-1} > /var/lib/db/x; sleep 300"]
            environment: {GEN: "${GEN:-1}"}
            volumes: ["/scratch"]
            stop_grace_period: 1s
        """
    write(proj / "compose.yaml", compose_file)
    with project(dy, proj) as compose:
        compose("up", "-d")
        eventually(lambda: compose("exec", "-T", "db", "cat", "/var/lib/db/x").stdout == "1\n")
        compose("exec", "-T", "db", "touch", "/scratch/mark")
        before = container_ids(dy)["keepdata-db-1"]
        write(proj / ".env", "GEN=2\n")
        compose("up", "-d")
        assert container_ids(dy)["keepdata-db-1"] != before  # recreated
        assert compose("exec", "-T", "db", "cat", "/var/lib/db/x").stdout == "1\n"  # kept
        assert compose("exec", "-T", "db", "ls", "/scratch").stdout == "mark\n"
        write(proj / ".env", "GEN=3\n")
        compose("up", "-d", "-V")
        eventually(lambda: compose("exec", "-T", "db", "cat", "/var/lib/db/x").stdout == "3\n")
        compose("down", "-v")
    dangling = dy("volume", "ls", "-q", "--filter", "dangling=true", check=True).stdout.split()
    assert len(dangling) == 2  # the two that -V replaced; down -v removed the current ones
