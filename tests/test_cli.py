"""The command line itself: usage, unknown commands, exit codes for bad flags."""

from __future__ import annotations

from conftest import Runner


def test_version_and_unknown_command(dy: Runner) -> None:
    assert dy("--version").stdout.startswith("dockyard version ")
    unknown = dy("frobnicate")
    assert unknown.returncode == 1 and "is not a dockyard command" in unknown.stderr


def test_group_without_subcommand_prints_its_commands(dy: Runner) -> None:
    out = dy("volume")
    assert out.returncode == 125
    assert "create" in out.stderr and "prune" in out.stderr


def test_bad_flag_is_125_for_every_command(dy: Runner) -> None:
    for args in (("ps", "--bogus"), ("images", "--bogus"), ("rm", "--bogus", "x")):
        proc = dy(*args)
        assert proc.returncode == 125, args
        assert (
            proc.stderr.splitlines()[0].startswith("Error: unrecognized arguments")
            or "unrecognized" in proc.stderr
        )


def test_management_aliases(dy: Runner, busybox_image: str) -> None:
    assert dy("container", "ls", "-a").returncode == 0
    assert "busybox" in dy("image", "ls").stdout
    cid = dy("container", "create", busybox_image, "true", check=True).stdout.strip()
    assert dy("container", "rm", cid).returncode == 0


def test_info_counts(dy: Runner, busybox_image: str) -> None:
    dy("create", busybox_image, "true", check=True)
    out = dy("info", "--format", "{{.Containers}} {{.Images}}", check=True).stdout
    assert out == "1 1\n"
