"""The event log behind ``dockyard events``.

Daemonless, as Podman's file logger: whichever command makes an event appends one
JSON line (Docker's events message: Type, Action, Actor, time, timeNano) to
``ROOT/events.log``, a single ``write`` on an ``O_APPEND`` file, so that concurrent
commands never interleave lines. Past ``MAX_SIZE`` the file becomes ``events.log.1``.
Recording an event never fails the command that made it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MAX_SIZE = 8 << 20
FILE = "events.log"


def emit(root: Path, kind: str, action: str, actor: str, attributes: dict[str, str]) -> None:
    """Record one event (``kind`` is Docker's Type: container, image, network, volume)."""
    now = time.time_ns()
    event: dict[str, Any] = {}
    if kind in ("container", "image"):  # the old top-level fields, as Docker still sends
        event.update(status=action, id=actor)
        if kind == "container" and attributes.get("image"):
            event["from"] = attributes["image"]
    event.update(
        Type=kind,
        Action=action,
        Actor={"ID": actor, "Attributes": attributes},
        scope="local",
        time=now // 1_000_000_000,
        timeNano=now,
    )
    line = (json.dumps(event, separators=(",", ":")) + "\n").encode()
    path = root / FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    except OSError:
        return
    try:
        if os.fstat(fd).st_size > MAX_SIZE:
            os.replace(path, root / f"{FILE}.1")  # this write still lands in the old file
        os.write(fd, line)
    except OSError:
        pass
    finally:
        os.close(fd)


def container(root: Path, c: Any, action: str, **extra: str) -> None:
    """A container event with Docker's attributes: image, name, labels, and ``extra``."""
    attributes = {**c.spec.labels, "image": c.spec.image, "name": c.name, **extra}
    emit(root, "container", action, c.id, attributes)


def read(root: Path, since_ns: int = 0, until_ns: int | None = None) -> Iterator[dict[str, Any]]:
    """The recorded events between two times, oldest first."""
    for name in (f"{FILE}.1", FILE):
        try:
            with open(root / name, "rb") as f:
                for line in f:
                    event = _parse(line)
                    if event is None or event["timeNano"] < since_ns:
                        continue
                    if until_ns is not None and event["timeNano"] > until_ns:
                        return
                    yield event
        except FileNotFoundError:
            continue


def follow(root: Path, until_ns: int | None = None, poll: float = 0.1) -> Iterator[dict[str, Any]]:
    """Events as they are recorded from now on, until ``until_ns`` (or forever)."""
    path = root / FILE
    try:
        st = path.stat()
        position, inode = st.st_size, st.st_ino
    except FileNotFoundError:
        position, inode = 0, 0
    pending = b""
    while until_ns is None or time.time_ns() <= until_ns:
        try:
            st = path.stat()
        except FileNotFoundError:
            time.sleep(poll)
            continue
        if st.st_ino != inode:  # rotated: read the new file from its start
            inode, position, pending = st.st_ino, 0, b""
        if st.st_size > position:
            with open(path, "rb") as f:
                f.seek(position)
                data = pending + f.read()
                position = f.tell()
            *lines, pending = data.split(b"\n")
            for line in lines:
                event = _parse(line)
                if event is not None and (until_ns is None or event["timeNano"] <= until_ns):
                    yield event
        else:
            time.sleep(poll)


def _parse(line: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(line)
    except ValueError:
        return None  # a torn line of a crashed writer
    return event if isinstance(event, dict) and "timeNano" in event else None
