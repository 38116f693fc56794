"""`dockyard.records`: the dataclass behaviour the engine relies on."""

from __future__ import annotations

import dataclasses

import pytest

from dockyard import records
from dockyard.records import FrozenInstanceError, field, record


@record
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@record(frozen=True)
class Key:
    name: str
    version: int = 1


@record
class Point3(Point):
    z: int = 0


@dataclasses.dataclass
class StdPoint:
    x: int
    y: int = 0
    tags: list[str] = dataclasses.field(default_factory=list)


def test_init_repr_and_eq_match_dataclasses() -> None:
    assert repr(Point(1)) == repr(StdPoint(1)).replace("StdPoint", "Point")
    assert Point(1, 2) == Point(x=1, y=2) and Point(1) != Point(2)
    assert Point(1) != StdPoint(1)
    a, b = Point(1), Point(1)
    a.tags.append("t")
    assert b.tags == []  # a fresh default per instance
    with pytest.raises(TypeError, match="missing required argument: 'x'"):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="unexpected keyword argument 'w'"):
        Point(1, w=2)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="multiple values"):
        Point(1, x=2)  # type: ignore[misc]
    with pytest.raises(TypeError):
        hash(Point(1))  # mutable records are unhashable, as dataclasses


def test_frozen_records_are_hashable_and_read_only() -> None:
    key = Key("a")
    assert hash(key) == hash(Key("a", 1)) and {key: 1}[Key("a")] == 1
    with pytest.raises(FrozenInstanceError):
        key.name = "b"  # type: ignore[misc]
    assert isinstance(FrozenInstanceError("x"), AttributeError)


def test_inheritance_fields_and_helpers() -> None:
    p = Point3(1, 2, ["t"], 3)
    assert [f.name for f in records.fields(p)] == ["x", "y", "tags", "z"]
    assert records.asdict(p) == {"x": 1, "y": 2, "tags": ["t"], "z": 3}
    moved = records.replace(p, z=9)
    assert moved == Point3(1, 2, ["t"], 9) and p.z == 3
    assert records.is_record(p) and records.is_record(Point3) and not records.is_record(1)
    assert Point.y == 0  # defaults stay class attributes
    with pytest.raises(TypeError, match="follows default"):

        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]
