"""Records: dataclasses that cost nothing to define.

``@dataclass`` compiles the source of ``__init__``, ``__repr__`` and ``__eq__`` for
every class when its module is imported: about 0.7 ms a class here, and ``run``
imports 33 of them, so every container start paid some 20 ms for it, plus the
``inspect`` module that ``dataclasses`` loads. ``@record`` gives the same classes
(fields from annotations, defaults, ``field(default_factory=...)``, ``frozen``,
inheritance, value equality and repr) with methods that are shared closures, so
defining one is a loop over its annotations. Type checkers see a dataclass
(``dataclass_transform``); ``fields``, ``asdict`` and ``replace`` work as their
``dataclasses`` namesakes do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, dataclass_transform, overload

T = TypeVar("T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class Field:
    """One field of a record: its name and how its default is made."""

    __slots__ = ("name", "default", "default_factory")

    def __init__(self, default: Any = MISSING, default_factory: Any = MISSING) -> None:
        self.name = ""
        self.default = default
        self.default_factory = default_factory

    @property
    def required(self) -> bool:
        return self.default is MISSING and self.default_factory is MISSING

    def __repr__(self) -> str:
        return f"Field(name={self.name!r})"


def field(*, default: Any = MISSING, default_factory: Callable[[], Any] = MISSING) -> Any:
    """A field's default (``default``) or a callable making a fresh one per instance."""
    if default is not MISSING and default_factory is not MISSING:
        raise ValueError("cannot specify both default and default_factory")
    return Field(default, default_factory)


@overload
@dataclass_transform(field_specifiers=(field, Field))
def record(cls: type[T], /) -> type[T]: ...


@overload
def record(*, frozen: bool = False) -> Callable[[type[T]], type[T]]: ...


def record(cls: type[T] | None = None, /, *, frozen: bool = False) -> Any:
    """Make ``cls`` a record: ``@record`` or ``@record(frozen=True)``."""
    if cls is None:
        return lambda c: _make(c, frozen)
    return _make(cls, frozen)


def _make(cls: type[T], frozen: bool) -> type[T]:
    inherited: dict[str, Field] = {}
    for base in reversed(cls.__mro__[1:]):
        inherited.update(getattr(base, "__record_fields__", {}))
    own: dict[str, Field] = {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if isinstance(annotation, str) and annotation.startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, MISSING)
        spec = value if isinstance(value, Field) else Field(default=value)
        spec.name = name
        if isinstance(value, Field):  # the class attribute becomes the plain default
            if spec.default is MISSING:
                delattr(cls, name)
            else:
                setattr(cls, name, spec.default)
        own[name] = spec
    specs = {**inherited, **own}
    seen_default = False
    for spec in specs.values():
        if spec.required and seen_default:
            raise TypeError(f"non-default argument {spec.name!r} follows default argument")
        seen_default = seen_default or not spec.required
    fields = tuple(specs.values())
    names = tuple(specs)
    known = frozenset(names)
    required = tuple(f.name for f in fields if f.required)
    defaults = tuple(
        (f.name, f.default, None if f.default_factory is MISSING else f.default_factory)
        for f in fields
        if not f.required
    )

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Straight into the instance dict (frozen records too: only later assignments
        # are refused); a few C-level dict operations, not a Python loop per argument.
        if args:
            if len(args) > len(names):
                raise TypeError(
                    f"{cls.__name__}() takes {len(names)} positional arguments "
                    f"but {len(args)} were given"
                )
            for name in names[: len(args)]:
                if name in kwargs:
                    raise TypeError(f"{cls.__name__}() got multiple values for argument {name!r}")
            kwargs.update(zip(names, args, strict=False))
        if not known.issuperset(kwargs):
            unexpected = next(k for k in kwargs if k not in known)
            raise TypeError(f"{cls.__name__}() got an unexpected keyword argument {unexpected!r}")
        values = self.__dict__
        values.update(kwargs)
        for name in required:
            if name not in values:
                raise TypeError(f"{cls.__name__}() missing required argument: {name!r}")
        for name, default, factory in defaults:
            if name not in values:
                values[name] = default if factory is None else factory()

    def __repr__(self: Any) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({shown})"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, name) == getattr(other, name) for name in names)

    methods: dict[str, Any] = {
        "__record_fields__": specs,
        "__match_args__": names,
        "__init__": __init__,
        "__repr__": __repr__,
        "__eq__": __eq__,
    }
    if frozen:

        def __setattr__(self: Any, name: str, value: Any) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: Any, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        def __hash__(self: Any) -> int:
            return hash(tuple(getattr(self, name) for name in names))

        methods.update(__setattr__=__setattr__, __delattr__=__delattr__, __hash__=__hash__)
    elif "__hash__" not in cls.__dict__:
        methods["__hash__"] = None  # mutable and compared by value, as dataclasses do
    for name, value in methods.items():
        setattr(cls, name, value)
    return cls


def is_record(value: object) -> bool:
    """Whether ``value`` is a record instance or class."""
    return hasattr(value, "__record_fields__")


def fields(value: object) -> tuple[Field, ...]:
    """The fields of a record (instance or class), in definition order."""
    try:
        specs: dict[str, Field] = value.__record_fields__  # type: ignore[attr-defined]
        return tuple(specs.values())
    except AttributeError:
        raise TypeError(f"{value!r} is not a record") from None


def asdict(value: object) -> dict[str, Any]:
    """The record as a dict, nested records, lists, tuples and dicts converted too."""
    if not is_record(value) or isinstance(value, type):
        raise TypeError("asdict() should be called on record instances")
    converted: dict[str, Any] = _convert(value)
    return converted


def _convert(value: Any) -> Any:
    if is_record(value) and not isinstance(value, type):
        return {spec.name: _convert(getattr(value, spec.name)) for spec in fields(value)}
    if isinstance(value, list):
        return [_convert(v) for v in value]
    if isinstance(value, tuple):
        return (
            type(value)(*map(_convert, value))
            if hasattr(value, "_fields")
            else tuple(_convert(v) for v in value)
        )
    if isinstance(value, dict):
        return {_convert(k): _convert(v) for k, v in value.items()}
    if isinstance(value, set):
        return {_convert(v) for v in value}
    return value


def replace(value: T, **changes: Any) -> T:
    """A new record like ``value`` with ``changes`` applied."""
    current = {spec.name: getattr(value, spec.name) for spec in fields(value)}
    return value.__class__(**{**current, **changes})
