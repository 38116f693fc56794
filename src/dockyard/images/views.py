"""How images look to users: ``docker images`` rows and ``docker image inspect`` objects."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dockyard.images import reference

if TYPE_CHECKING:
    from dockyard.images.store import Image, ImageStore


def image_rows(
    tags: list[str], digests: list[str], with_digests: bool
) -> list[tuple[str, str, str]]:
    """(repository, tag, digest) rows for one image, as docker/cli's imageFormat."""
    if not tags and not digests:
        return [("<none>", "<none>", "<none>")]
    repo_tags: dict[str, list[str]] = {}
    repo_digests: dict[str, list[str]] = {}
    for name in tags:
        parsed = reference.parse(name)
        repo_tags.setdefault(parsed.familiar_name(), []).append(parsed.tag or "")
    for name in digests:
        parsed = reference.parse(name)
        repo_digests.setdefault(parsed.familiar_name(), []).append(parsed.digest or "")
    rows: list[tuple[str, str, str]] = []
    for repo in sorted(repo_tags):
        found = repo_digests.pop(repo, []) if with_digests else []
        if not with_digests:
            repo_digests.pop(repo, None)
        for tag in repo_tags[repo]:
            if not found:
                rows.append((repo, tag, "<none>"))
            for digest in found:
                rows.append((repo, tag, digest))
    for repo in sorted(repo_digests):
        if with_digests:
            rows.extend((repo, "<none>", d) for d in repo_digests[repo])
        else:
            rows.append((repo, "<none>", ""))
    return rows


_CONFIG_DEFAULTS: tuple[tuple[str, Any, bool], ...] = (
    # (field, default, omitempty) in Docker's container.Config order
    ("Hostname", "", False),
    ("Domainname", "", False),
    ("User", "", False),
    ("AttachStdin", False, False),
    ("AttachStdout", False, False),
    ("AttachStderr", False, False),
    ("ExposedPorts", None, True),
    ("Tty", False, False),
    ("OpenStdin", False, False),
    ("StdinOnce", False, False),
    ("Env", None, False),
    ("Cmd", None, False),
    ("Healthcheck", None, True),
    ("ArgsEscaped", False, True),
    ("Image", "", False),
    ("Volumes", None, False),
    ("WorkingDir", "", False),
    ("Entrypoint", None, False),
    ("NetworkDisabled", False, True),
    ("MacAddress", "", True),
    ("OnBuild", None, False),
    ("Labels", None, False),
    ("StopSignal", "", True),
    ("StopTimeout", None, True),
    ("Shell", None, True),
)


def docker_config(config: dict[str, Any]) -> dict[str, Any]:
    """An image's config section in the shape ``docker image inspect`` prints."""
    out: dict[str, Any] = {}
    for name, default, omitempty in _CONFIG_DEFAULTS:
        value = config.get(name, default)
        if omitempty and value in (None, "", False, [], {}):
            continue
        out[name] = value
    return out


def inspect_data(store: ImageStore, image: Image) -> dict[str, Any]:
    """The ``docker image inspect`` object for one image."""
    cfg = image.config
    dirs = [str(p) for p in reversed(store.layer_dirs(image))]
    driver: dict[str, str] = {}
    if dirs:
        driver["UpperDir"] = dirs[0]
        if len(dirs) > 1:
            driver["LowerDir"] = ":".join(dirs[1:])
    data: dict[str, Any] = {
        "Id": image.id,
        "RepoTags": image.repo_tags,
        "RepoDigests": image.familiar_digests,
        "Parent": image.parent or "",
        "Comment": cfg.get("comment") or "",
        "Created": cfg.get("created") or image.created,
        "DockerVersion": cfg.get("docker_version") or "",
        "Author": cfg.get("author") or "",
        "Config": docker_config(image.container_config),
        "Architecture": cfg.get("architecture") or "",
    }
    if cfg.get("variant"):
        data["Variant"] = cfg["variant"]
    data.update(
        {
            "Os": cfg.get("os") or "",
            "Size": image.size,
            "GraphDriver": {"Data": driver, "Name": "overlay2"},
            "RootFS": {"Type": "layers", "Layers": list(image.layers)},
            "Metadata": {"LastTagTime": store.last_tag_time(image.id)},
        }
    )
    return data
