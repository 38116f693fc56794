"""`system df` and `system prune` through the CLI."""

from __future__ import annotations

import json

from conftest import Runner


def _df(dy: Runner) -> dict[str, dict[str, str]]:
    out = dy("system", "df", "--format", "{{json .}}", check=True).stdout
    return {row["Type"]: row for row in map(json.loads, out.splitlines())}


def test_system_df_counts_what_the_store_holds(dy: Runner, busybox_image: str) -> None:
    dy("run", "-d", "--name", "up", "-v", "kept:/data", busybox_image, "sleep", "100", check=True)
    dy("run", "--name", "done", busybox_image, "sh", "-c", "echo x > /file", check=True)
    dy("volume", "create", "spare", check=True)
    df = _df(dy)
    assert (df["Images"]["TotalCount"], df["Images"]["Active"]) == ("1", "1")
    assert (df["Containers"]["TotalCount"], df["Containers"]["Active"]) == ("2", "1")
    assert df["Containers"]["Size"] != "0B" and df["Containers"]["Reclaimable"].endswith("(100%)")
    assert (df["Local Volumes"]["TotalCount"], df["Local Volumes"]["Active"]) == ("2", "1")
    table = dy("system", "df", check=True).stdout.splitlines()
    assert table[0].split() == ["TYPE", "TOTAL", "ACTIVE", "SIZE", "RECLAIMABLE"]
    assert [line.split()[0] for line in table[1:]] == ["Images", "Containers", "Local", "Build"]


def test_system_prune_removes_what_nothing_uses(dy: Runner, busybox_image: str) -> None:
    dy("run", "-d", "--name", "up", busybox_image, "sleep", "100", check=True)
    done = dy("run", "-d", "--name", "done", "-v", "/anon", busybox_image, "true", check=True)
    dy("wait", "done", check=True)
    dy("network", "create", "idle", check=True)
    dy("volume", "create", "named", check=True)
    dy("tag", busybox_image, "spare:1", check=True)
    declined = dy("system", "prune", input="n\n")
    assert "Are you sure you want to continue? [y/N]" in declined.stdout
    assert "done" in dy("ps", "-a", "--format", "{{.Names}}").stdout

    out = dy("system", "prune", "-f", "--volumes", check=True).stdout
    assert f"Deleted Containers:\n{done.stdout.strip()}\n\n" in out
    assert "Deleted Networks:\nidle\n" in out
    assert "Deleted Volumes:\n" in out and "named" not in out  # anonymous ones only
    assert out.rstrip().splitlines()[-1].startswith("Total reclaimed space: ")
    assert dy("ps", "-a", "--format", "{{.Names}}").stdout == "up\n"
    assert dy("volume", "ls", "-q").stdout == "named\n"

    dy("rm", "-f", "up", check=True)
    everything = dy("system", "prune", "-a", "-f", check=True).stdout
    assert "untagged: spare:1\n" in everything and "untagged: busybox:latest\n" in everything
    assert dy("images", "-q").stdout == ""
