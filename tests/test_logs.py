"""The json-file log reader (docker logs) and Docker's --since/--until values."""

from __future__ import annotations

import calendar
import io
import json
import os
import threading
import time
from pathlib import Path

import pytest

from dockyard.containers.logs import parse_rfc3339_ns, parse_time_filter, read_logs
from dockyard.errors import InvalidArgument

BASE = calendar.timegm((2026, 11, 28, 3, 0, 0, 0, 0, 0))


def stamp(seconds: float) -> str:
    """RFC3339Nano as the monitor writes it (trailing zeros trimmed)."""
    whole = int(seconds)
    frac = f"{round((seconds - whole) * 1e9):09d}".rstrip("0")
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole))
    return f"{base}.{frac}Z" if frac else f"{base}Z"


def entry(text: str, stream: str = "stdout", t: float = BASE) -> str:
    return json.dumps({"log": text, "stream": stream, "time": stamp(t)}) + "\n"


def write_log(path: Path, entries: list[str]) -> None:
    path.write_text("".join(entries))


def run(path: Path, **kw: object) -> tuple[str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    read_logs(path, stdout=out, stderr=err, **kw)  # type: ignore[arg-type]
    return out.getvalue().decode(), err.getvalue().decode()


@pytest.fixture
def rotated(tmp_path: Path) -> Path:
    """json.log.2 (oldest) .. json.log with lines 0..8, one second apart."""
    log = tmp_path / "json.log"
    for name, rng in (
        ("json.log.2", range(0, 3)),
        ("json.log.1", range(3, 6)),
        ("json.log", range(6, 9)),
    ):
        write_log(tmp_path / name, [entry(f"l{i}\n", t=BASE + i) for i in rng])
    return log


def test_reads_rotated_files_oldest_first_and_splits_streams(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    write_log(log.with_name("json.log.1"), [entry("a\n"), entry("e1\n", "stderr")])
    write_log(log, [entry("b\n"), entry("partial "), entry("line\n"), entry("e2\n", "stderr")])
    assert run(log) == ("a\nb\npartial line\n", "e1\ne2\n")


def test_tail_counts_entries_across_files(rotated: Path) -> None:
    assert run(rotated, tail=2)[0] == "l7\nl8\n"
    assert run(rotated, tail=5)[0] == "l4\nl5\nl6\nl7\nl8\n"
    assert run(rotated, tail=100)[0] == "".join(f"l{i}\n" for i in range(9))
    assert run(rotated, tail=0)[0] == ""


def test_tail_of_a_big_file(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    write_log(log, [entry(f"{i}\n") for i in range(20000)])
    assert run(log, tail=3)[0] == "19997\n19998\n19999\n"


def test_since_until_and_timestamps(rotated: Path) -> None:
    assert run(rotated, since=BASE + 4, until=BASE + 6.5)[0] == "l4\nl5\nl6\n"
    # tail applies first, then since (like Docker)
    assert run(rotated, tail=3, since=BASE + 7)[0] == "l7\nl8\n"
    out = run(rotated, tail=1, timestamps=True)[0]
    assert out == "2026-11-28T03:00:08.000000000Z l8\n"


def test_timestamps_keep_nanoseconds(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    log.write_text(
        json.dumps({"log": "x\n", "stream": "stdout", "time": "2026-11-28T03:08:37.12345Z"}) + "\n"
    )
    assert run(log, timestamps=True)[0] == "2026-11-28T03:08:37.123450000Z x\n"


def test_torn_last_line_is_not_printed(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    log.write_text(entry("whole\n") + entry("torn\n")[:20])
    assert run(log) == ("whole\n", "")
    assert run(log, tail=5) == ("whole\n", "")


def test_missing_log_prints_nothing(tmp_path: Path) -> None:
    assert run(tmp_path / "nope.log") == ("", "")


def test_follow_survives_rotation_until_container_stops(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    write_log(log, [entry("start\n")])
    done = threading.Event()

    def writer() -> None:
        for i in range(40):
            with open(log, "a") as f:
                f.write(entry(f"{i}\n", t=time.time()))
            if i in (10, 25):  # rotate like the monitor: rename, start a new file
                one = log.with_name("json.log.1")
                if one.exists():
                    os.replace(one, log.with_name("json.log.2"))
                os.rename(log, one)
                log.touch()
            time.sleep(0.005)
        with open(log, "a") as f:
            f.write(entry("last\n", "stderr"))
        done.set()

    r, w = os.pipe()
    t = threading.Thread(target=writer)
    t.start()
    read_logs(
        log,
        follow=True,
        stdout=w,
        stderr=w,
        still_running=lambda: not done.is_set(),
        poll_interval=0.01,
    )
    t.join()
    os.close(w)
    with os.fdopen(r) as f:
        lines = f.read().split()
    assert lines == ["start", *[str(i) for i in range(40)], "last"]


def test_follow_stops_at_until(tmp_path: Path) -> None:
    log = tmp_path / "json.log"
    write_log(log, [entry("old\n", t=time.time() - 5)])
    started = time.monotonic()
    out, _ = run(
        log, follow=True, until=time.time() + 0.3, still_running=lambda: True, poll_interval=0.02
    )
    assert out == "old\n" and time.monotonic() - started < 5


def test_parse_time_filter() -> None:
    now = 1_800_000_000.0
    assert parse_time_filter("10m", now) == now - 600
    assert parse_time_filter("1h30m", now) == now - 5400
    assert parse_time_filter("1.5s", now) == now - 1.5
    assert parse_time_filter("1700000000", now) == 1_700_000_000
    assert parse_time_filter("1700000000.5", now) == 1_700_000_000.5
    assert parse_time_filter("0", now) == 0
    assert parse_time_filter("2026-11-28T03:00:08Z", now) == BASE + 8
    assert parse_time_filter("2026-11-28T03:00:08.25Z", now) == BASE + 8.25
    assert parse_time_filter("2026-11-28T05:00:08+02:00", now) == BASE + 8
    local = time.mktime((2026, 11, 28, 3, 0, 0, 0, 0, -1))
    assert parse_time_filter("2026-11-28T03:00", now) == local
    assert parse_time_filter("2026-11-28", now) == time.mktime((2026, 11, 28, 0, 0, 0, 0, 0, -1))
    for bad in ("yesterday", "10x", "2026-13-45T99"):
        with pytest.raises(InvalidArgument):
            parse_time_filter(bad, now)


def test_parse_rfc3339_ns() -> None:
    assert parse_rfc3339_ns("2026-11-28T03:00:00.000000001Z") == BASE * 10**9 + 1
    assert parse_rfc3339_ns("2026-11-28T04:00:00+01:00") == BASE * 10**9
