"""``docker image prune`` and the time and label filters image commands share."""

from __future__ import annotations

import re
import time
from typing import TYPE_CHECKING

from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.images.store import ImageStore


@record
class PruneReport:
    records: list[tuple[str, str]]
    reclaimed: int


def parse_until(value: str) -> float:
    """A filter time: Unix seconds, RFC 3339 / date, or a Go duration before now."""
    from dockyard.images.changes import parse_duration

    try:
        return time.time() - parse_duration(value) / 1e9
    except InvalidArgument:
        pass
    try:
        return float(value)
    except ValueError:
        pass
    if _RFC3339_RE.match(value):
        return rfc3339_ts(value)
    from datetime import UTC, datetime

    try:
        return datetime.fromisoformat(value).replace(tzinfo=UTC).timestamp()
    except ValueError:
        pass
    raise InvalidArgument(f"failed to parse value as time or duration: {value!r}")


_RFC3339_RE = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|z|[+-]\d{2}:\d{2})?$"
)


def rfc3339_ts(text: str) -> float:
    """Unix seconds of an RFC 3339 time with any number of fraction digits (0 if invalid)."""
    from datetime import UTC, datetime

    m = _RFC3339_RE.match(text or "")
    if not m or text.startswith("0001-"):
        return 0.0
    zone = m.group(4) or "Z"
    moment = datetime.fromisoformat(
        f"{m.group(1)}T{m.group(2)}" + ("+00:00" if zone in "Zz" else zone)
    )
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp() + (float("0." + m.group(3)) if m.group(3) else 0.0)


def labels_match(labels: dict[str, str], filters: dict[str, list[str]]) -> bool:
    """Docker's label / label! filters against an image's labels."""
    for item in filters.get("label", []):
        key, sep, value = item.partition("=")
        if key not in labels or (sep and labels[key] != value):
            return False
    for item in filters.get("label!", []):
        key, sep, value = item.partition("=")
        if key in labels and (not sep or labels[key] == value):
            return False
    return True


def prune_images(store: ImageStore, *, all: bool, filters: dict[str, list[str]]) -> PruneReport:
    from dockyard.images.remove import collect_garbage, remove_counting

    for key in filters:
        if key not in ("until", "label", "label!", "dangling"):
            raise InvalidArgument(f"invalid filter '{key}'")
    until = min((parse_until(v) for v in filters.get("until", [])), default=None)
    for value in filters.get("dangling", []):
        if value.lower() in ("false", "0"):
            all = True
    images = store.list()
    parents = {i.parent for i in images if i.parent}
    used = {r["image_id"] for r in store.db.query("SELECT DISTINCT image_id FROM containers")}
    report = PruneReport([], 0)
    for image in images:
        if not all and image.id in parents:
            continue
        if not image.tags and not image.repo_digests and image.id in parents:
            continue
        if until is not None and rfc3339_ts(image.created) > until:
            continue
        if not labels_match(image.container_config.get("Labels") or {}, filters):
            continue
        if image.id in used:
            continue
        targets: list[str]
        if image.tags or image.repo_digests:
            if not all and image.tags:
                continue
            targets = [*image.tags, *image.repo_digests]
        else:
            targets = [image.id]
        for target in targets:
            try:
                records, reclaimed = remove_counting(store, target, force=False, prune=True)
            except (Conflict, NotFound):
                continue
            report.records.extend(records)
            report.reclaimed += reclaimed
    report.reclaimed += collect_garbage(store)  # e.g. layers of removed containers' images
    return report
