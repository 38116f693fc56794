"""`dockyard events`: the event log, past (--since/--until) and live, with filters."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

from conftest import Runner


def test_events_record_the_lifecycle(dy: Runner, busybox_image: str) -> None:
    dy("run", "--name", "short", busybox_image, "sh", "-c", "exit 3")
    dy("rm", "short", check=True)
    dy("network", "create", "evnet", check=True)
    dy("network", "rm", "evnet", check=True)
    out = dy("events", "--since", "1m", "--until", "0s", check=True).stdout.splitlines()
    actions = [" ".join(line.split()[1:3]) for line in out]
    for wanted in ("container create", "container start", "container die",
                   "container destroy", "network create", "network destroy"):  # fmt: skip
        assert wanted in actions, (wanted, out)
    die = next(line for line in out if " container die " in line)
    assert die.endswith("(exitCode=3, image=busybox:latest, name=short)")
    as_json = dy("events", "--since", "1m", "--until", "0s", "--filter", "event=die",
                 "--format", "{{json .}}", check=True).stdout  # fmt: skip
    event = json.loads(as_json.splitlines()[0])
    assert event["Type"] == "container" and event["Action"] == "die" and event["status"] == "die"
    assert event["Actor"]["Attributes"]["exitCode"] == "3" and event["timeNano"] > 0
    names = dy("events", "--since", "1m", "--until", "0s", "--filter", "type=network",
               "--format", "{{.Actor.Attributes.name}} {{.Action}}", check=True).stdout  # fmt: skip
    assert names == "evnet create\nevnet destroy\n"
    bad = dy("events", "--filter", "colour=red")
    assert bad.returncode == 125 or bad.returncode == 1
    assert bad.stderr.count("\n") == 1


def test_events_follow_live(dy: Runner, busybox_image: str, dockyard_env: dict[str, str]) -> None:
    watcher = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dockyard",
            "events",
            "--filter",
            "container=live",
            "--format",
            "{{.Action}}",
        ],  # fmt: skip
        env=dockyard_env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(1.0)  # the watcher is reading the log's end
        dy("run", "--rm", "--name", "live", busybox_image, "true", check=True)
        seen: list[str] = []
        assert watcher.stdout is not None
        reader = threading.Thread(
            target=lambda: seen.extend(line.strip() for line in watcher.stdout),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        deadline = time.monotonic() + 10
        while "destroy" not in seen and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen[:4] == ["create", "start", "die", "destroy"]
    finally:
        watcher.terminate()
        watcher.wait()
