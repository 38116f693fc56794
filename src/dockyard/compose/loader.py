"""From ``-f`` files (or the ones found) to one validated, normalized Project.

Order, as Compose: find the files and the project directory; read ``.env``
(or ``--env-file``); for each file parse the YAML, substitute variables,
check it against the specification and resolve ``extends``; merge the files;
choose the project name; apply profiles; check references (depends_on,
networks, volumes, secrets, configs, cycles); normalize every service.
Any error raises before anything is created.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

from dockyard.compose import interpolate, merge, schema
from dockyard.compose.model import Project
from dockyard.compose.normalize import normalize_project
from dockyard.compose.yamlfile import ComposeFileError, Mark, load_yaml
from dockyard.errors import InvalidArgument
from dockyard.records import field, record, replace

FILE_NAMES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
OVERRIDE_NAMES = (
    "compose.override.yaml",
    "compose.override.yml",
    "docker-compose.override.yaml",
    "docker-compose.override.yml",
)
_PROJECT_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


@record
class LoadOptions:
    """The global flags of ``compose`` and the environment they are read in."""

    files: list[str] = field(default_factory=list)
    project_name: str | None = None
    project_directory: str | None = None
    env_files: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    cwd: str = field(default_factory=os.getcwd)
    stdin_text: str | None = None  # for ``-f -`` (read from sys.stdin when None)
    quiet_warnings: bool = False


def normalize_name(name: str) -> str:
    """A directory name made into a project name (lowercase, [a-z0-9_-])."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def check_project_name(name: str) -> str:
    if not _PROJECT_NAME.fullmatch(name):
        raise InvalidArgument(
            f'"{name}" is not a valid project name: it must contain only characters from '
            "[a-z0-9_-] and start with [a-z0-9]"
        )
    return name


def find_files(opts: LoadOptions, environ: dict[str, str]) -> list[str]:
    """The Compose files: -f, else COMPOSE_FILE, else the first found upwards from cwd."""
    if opts.files:
        return [f if f == "-" else os.path.abspath(os.path.join(opts.cwd, f)) for f in opts.files]
    if environ.get("COMPOSE_FILE"):
        sep = environ.get("COMPOSE_PATH_SEPARATOR") or ":"
        base = opts.project_directory or opts.cwd
        return [
            os.path.abspath(os.path.join(base, f)) for f in environ["COMPOSE_FILE"].split(sep) if f
        ]
    directory = Path(opts.project_directory or opts.cwd).resolve()
    for candidate in (directory, *directory.parents):
        for name in FILE_NAMES:
            path = candidate / name
            if path.is_file():
                found = [str(path)]
                for override in OVERRIDE_NAMES:
                    if (candidate / override).is_file():
                        found.append(str(candidate / override))
                        break
                return found
    raise InvalidArgument(
        "no configuration file provided: not found (looked for "
        + ", ".join(FILE_NAMES)
        + f" in {directory} and its parents)"
    )


def _bootstrap_env(opts: LoadOptions, project_dir: str) -> tuple[dict[str, str], list[str]]:
    """The environment for interpolation: the process environment over the .env file(s)."""
    env_files = [os.path.abspath(os.path.join(opts.cwd, f)) for f in opts.env_files]
    if not env_files:
        default = os.path.join(project_dir, ".env")
        if os.path.isfile(default):
            env_files = [default]
    from_files: dict[str, str] = {}
    for path in env_files:
        values = interpolate.read_env_file(
            path, interpolate.chain(opts.environ, from_files), what="env file"
        )
        for key, value in values.items():
            if value is None:
                value = opts.environ.get(key)
            if value is not None:
                from_files[key] = value
    return {**from_files, **opts.environ}, env_files


@record
class _File:
    path: str  # "-" for stdin
    data: dict[str, Any]
    marks: dict[str, Mark]
    directory: str


def _read(path: str, opts: LoadOptions) -> tuple[str, str]:
    if path == "-":
        text = opts.stdin_text if opts.stdin_text is not None else sys.stdin.read()
        return text, "-"
    try:
        with open(path, encoding="utf-8") as f:
            return f.read(), path
    except FileNotFoundError:
        raise InvalidArgument(f"open {path}: no such file or directory") from None
    except OSError as err:
        raise InvalidArgument(f"open {path}: {err.strerror or err}") from None


class _Reader:
    """Reads, interpolates and validates files; resolves ``extends`` across files."""

    def __init__(self, opts: LoadOptions, environ: dict[str, str]) -> None:
        self.opts = opts
        self.environ = environ
        self.cache: dict[str, _File] = {}
        self.warned: set[str] = set()

    def warn(self, message: str) -> None:
        if message not in self.warned and not self.opts.quiet_warnings:
            self.warned.add(message)
            interpolate.warn_stderr(message)

    def load(self, path: str, directory: str) -> _File:
        if path in self.cache:
            return self.cache[path]
        text, source = _read(path, self.opts)
        data, marks = load_yaml(text, source)
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ComposeFileError(f"{source}: top-level object must be a mapping")
        try:
            data = interpolate.interpolate_tree(data, lambda k: self.environ.get(k), warn=self.warn)
        except interpolate.InterpolationError as err:
            raise ComposeFileError(f"{source}: {err}") from None
        if "version" in data:
            self.warn(
                f"{source}: the attribute `version` is obsolete, it will be ignored, please "
                "remove it to avoid potential confusion"
            )
        checked = merge.strip_markers(data)
        try:
            schema.validate(checked)
        except schema.SchemaError as err:
            mark = _nearest_mark(marks, err.at)
            where = f" (line {mark.line}, column {mark.column})" if mark else ""
            raise ComposeFileError(f"validating {source}: {err}{where}") from None
        loaded = _File(path, data, marks, directory)
        self.cache[path] = loaded
        return loaded

    def resolve_extends(self, f: _File) -> None:
        services = f.data.get("services") or {}
        for name in list(services):
            services[name] = self._extended(f, name, [])

    def _extended(self, f: _File, name: str, chain: list[str]) -> dict[str, Any]:
        services = f.data.get("services") or {}
        if name not in services:
            raise InvalidArgument(f"cannot extend service {name!r} in {f.path}: service not found")
        service = services[name] or {}
        ext = merge.strip_markers(service.get("extends"))
        if not ext:
            return dict(service) if isinstance(service, dict) else {}
        key = f"{f.path}:{name}"
        if key in chain:
            raise InvalidArgument("circular reference with extends: " + " -> ".join([*chain, key]))
        if isinstance(ext, str):
            ext = {"service": ext}
        target_file = f
        if ext.get("file"):
            other = os.path.abspath(os.path.join(f.directory, ext["file"]))
            target_file = self.load(other, os.path.dirname(other))
        base = self._extended(target_file, ext["service"], [*chain, key])
        if target_file.directory != f.directory:
            base = rebase_paths(base, target_file.directory)
        own = {k: v for k, v in service.items() if k != "extends"}
        return merge.merge_service(base, own)


def rebase_paths(service: dict[str, Any], directory: str) -> dict[str, Any]:
    """Relative paths of a service from another file made absolute against that file's dir."""

    def absolute(p: str) -> str:
        if p.startswith("~") or os.path.isabs(p) or "://" in p:
            return p
        return os.path.normpath(os.path.join(directory, p))

    out = dict(service)
    build = out.get("build")
    if isinstance(build, str):
        out["build"] = absolute(build)
    elif isinstance(build, dict) and build.get("context"):
        out["build"] = {**build, "context": absolute(build["context"])}
    if out.get("env_file"):
        out["env_file"] = [
            absolute(e) if isinstance(e, str) else {**e, "path": absolute(e["path"])}
            for e in merge.as_list(out["env_file"])
        ]
    volumes: list[Any] = []
    for v in out.get("volumes") or []:
        if isinstance(v, str) and v.startswith("."):
            source, sep, rest = v.partition(":")
            volumes.append(absolute(source) + sep + rest)
        elif isinstance(v, dict) and v.get("type") == "bind" and v.get("source"):
            volumes.append({**v, "source": absolute(v["source"])})
        else:
            volumes.append(v)
    if "volumes" in out:
        out["volumes"] = volumes
    return out


_RESOURCES = ("services", "networks", "volumes", "secrets", "configs")


def _included(
    opts: LoadOptions,
    items: list[Any],
    base_dir: str,
    environ: dict[str, str],
    chain: tuple[str, ...],
) -> dict[str, Any]:
    """The resources of the Compose applications in ``include`` (compose-spec 14).

    Each is loaded on its own: its files merged, relative paths resolved against its
    own project directory (default: its first file's), variables from its env files
    (default: that directory's .env) under the including project's environment.
    Its own ``include`` applies too.
    """
    imported: dict[str, Any] = {}
    for item in items:
        if isinstance(item, str):
            item = {"path": item}
        paths = [os.path.abspath(os.path.join(base_dir, p)) for p in merge.as_list(item["path"])]
        for path in paths:
            if path in chain:
                raise InvalidArgument(f"include cycle: {' -> '.join([*chain, path])}")
        project_dir = (
            os.path.abspath(os.path.join(base_dir, item["project_directory"]))
            if item.get("project_directory")
            else os.path.dirname(paths[0])
        )
        env_files = [
            os.path.abspath(os.path.join(base_dir, e)) for e in merge.as_list(item.get("env_file"))
        ]
        sub_opts = replace(opts, env_files=env_files, environ=environ, cwd=base_dir)
        sub_environ, _ = _bootstrap_env(sub_opts, project_dir)
        reader = _Reader(opts, sub_environ)
        model: dict[str, Any] = {}
        for path in paths:
            loaded = reader.load(path, project_dir)
            reader.resolve_extends(loaded)
            model = merge.merge_documents(model, loaded.data)
        model = merge.strip_markers(model)
        nested = model.pop("include", None) or []
        services = model.get("services") or {}
        model["services"] = {n: rebase_paths(svc or {}, project_dir) for n, svc in services.items()}
        for kind in ("secrets", "configs"):
            for value in (model.get(kind) or {}).values():
                if isinstance(value, dict) and value.get("file"):
                    value["file"] = os.path.join(project_dir, value["file"])
        if nested:
            _import(model, _included(opts, nested, project_dir, environ, (*chain, *paths)))
        _import(imported, model)
    return imported


def _import(model: dict[str, Any], imported: dict[str, Any]) -> None:
    """Copy included resources in; a name defined differently on both sides is an error."""
    for kind in _RESOURCES:
        for name, value in (imported.get(kind) or {}).items():
            current = model.get(kind)
            if current is None:
                current = model[kind] = {}
            if name in current and current[name] != value:
                raise InvalidArgument(f"{kind}.{name} conflicts with imported resource")
            current[name] = value


def _nearest_mark(marks: dict[str, Mark], path: str) -> Mark | None:
    while path:
        if path in marks:
            return marks[path]
        cut = max(path.rfind("."), path.rfind("["))
        if cut <= 0:
            return marks.get(path)
        path = path[:cut]
    return None


def load_project(opts: LoadOptions) -> Project:
    """Everything the global flags describe, validated and normalized."""
    # COMPOSE_* variables may come from the .env of the working (or project) directory.
    early_dir = opts.project_directory or opts.cwd
    early_env, _ = _bootstrap_env(opts, os.path.abspath(os.path.join(opts.cwd, early_dir)))
    files = find_files(opts, early_env)
    if opts.project_directory:
        project_dir = os.path.abspath(os.path.join(opts.cwd, opts.project_directory))
    elif files[0] == "-":
        project_dir = os.path.abspath(opts.cwd)
    else:
        project_dir = os.path.dirname(files[0])
    environ, env_files = _bootstrap_env(opts, project_dir)
    reader = _Reader(opts, environ)
    model: dict[str, Any] = {}
    includes: list[Any] = []
    for path in files:
        loaded = reader.load(path, project_dir)
        reader.resolve_extends(loaded)
        includes.extend(merge.strip_markers(loaded.data.pop("include", None)) or [])
        model = merge.merge_documents(model, loaded.data)
    model = merge.strip_markers(model)
    if includes:  # after the merge, so that conflicts with any of the files show
        _import(model, _included(opts, includes, project_dir, environ, tuple(files)))
    if opts.project_name:
        name = check_project_name(opts.project_name)
    elif environ.get("COMPOSE_PROJECT_NAME"):
        name = check_project_name(environ["COMPOSE_PROJECT_NAME"])
    elif model.get("name"):
        name = check_project_name(str(model["name"]))
    else:
        name = normalize_name(os.path.basename(project_dir))
        if not name:
            raise InvalidArgument(
                f"project name derived from {project_dir} is empty: set one with -p"
            )
    profiles = list(opts.profiles)
    if not profiles and environ.get("COMPOSE_PROFILES"):
        profiles = [p.strip() for p in environ["COMPOSE_PROFILES"].split(",") if p.strip()]
    return normalize_project(
        model,
        name=name,
        working_dir=project_dir,
        config_files=[f for f in files],
        env_files=env_files,
        environ=environ,
        profiles=profiles,
    )
