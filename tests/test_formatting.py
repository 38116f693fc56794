"""Docker CLI output helpers: expectations checked against go-units, Go's time and
text/tabwriter packages, and docker/cli's formatter behaviour."""

from __future__ import annotations

import datetime as dt

import pytest

from dockyard.cli.formatting import (
    HeaderContext,
    bytes_size,
    format_output,
    go_duration_string,
    human_duration,
    human_size,
    is_table,
    parse_duration,
    parse_duration_ns,
    parse_size,
    parse_size_decimal,
    tabwrite,
    tabwriter,
    template_text,
    time_ago,
)
from dockyard.cli.gotemplate import TemplateError
from dockyard.errors import InvalidArgument


@pytest.mark.parametrize(
    ("size", "three", "four"),
    [
        (0, "0B", "0B"),
        (1, "1B", "1B"),
        (999, "999B", "999B"),
        (1000, "1kB", "1kB"),
        (4260000, "4.26MB", "4.26MB"),
        (1234567, "1.23MB", "1.235MB"),
        (123456789, "123MB", "123.5MB"),
        (999999, "1e+03kB", "1000kB"),
        (10**12, "1TB", "1TB"),
        (2**70, "1.18ZB", "1.181ZB"),
    ],
)
def test_human_size(size: int, three: str, four: str) -> None:
    assert human_size(size) == three  # HumanSizeWithPrecision(size, 3): images, ps
    assert human_size(size, 4) == four  # HumanSize


def test_bytes_size() -> None:
    assert [bytes_size(n) for n in (0, 1023, 1024, 1572864, 3 * 2**30 + 12345)] == [
        "0B",
        "1023B",
        "1KiB",
        "1.5MiB",
        "3GiB",
    ]


@pytest.mark.parametrize(
    ("text", "binary", "decimal"),
    [
        ("512m", 536870912, 512000000),
        ("1g", 1073741824, 1000000000),
        ("100k", 102400, 100000),
        ("1.5GB", 1610612736, 1500000000),
        ("1024", 1024, 1024),
        ("10 MiB", 10485760, 10000000),
        ("1kb", 1024, 1000),
        ("0.5k", 512, 500),
        ("1e3", 1000, 1000),
        ("5 k", 5120, 5000),
        (".5g", 536870912, 500000000),
        ("32P", 36028797018963968, 32000000000000000),
        ("1_000k", 1024000, 1000000),
    ],
)
def test_parse_size(text: str, binary: int, decimal: int) -> None:
    assert parse_size(text) == binary
    assert parse_size_decimal(text) == decimal


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("abc", "invalid size: 'abc'"),
        ("", "invalid size: ''"),
        ("-1", "invalid size: '-1'"),
        ("1x", "invalid suffix: 'x'"),
        ("1KiBB", "invalid suffix: 'KiBB'"),
        ("12mbb", "invalid suffix: 'mbb'"),
        ("1.2.3k", 'strconv.ParseFloat: parsing "1.2.3": invalid syntax'),
        ("1,000", 'strconv.ParseFloat: parsing "1,000": invalid syntax'),
    ],
)
def test_parse_size_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_size(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "Less than a second"),
        (0.5, "Less than a second"),
        (-5, "Less than a second"),
        (1, "1 second"),
        (2, "2 seconds"),
        (59, "59 seconds"),
        (60, "About a minute"),
        (119, "About a minute"),
        (120, "2 minutes"),
        (3599, "59 minutes"),
        (3600, "About an hour"),
        (5399, "About an hour"),
        (5400, "2 hours"),
        (3600 * 47.4, "47 hours"),
        (3600 * 47.6, "2 days"),
        (86400 * 13, "13 days"),
        (86400 * 14, "2 weeks"),
        (86400 * 59, "8 weeks"),
        (86400 * 60, "2 months"),
        (86400 * 729, "24 months"),
        (86400 * 730, "2 years"),
        (86400 * 365 * 5, "5 years"),
    ],
)
def test_human_duration(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


def test_time_ago() -> None:
    now = 1_700_000_000.0
    assert time_ago(now - 3, now=now) == "3 seconds ago"
    assert time_ago(now - 300, now=now) == "5 minutes ago"
    created = dt.datetime.fromtimestamp(now - 7200, tz=dt.UTC)
    assert time_ago(created, now=now) == "2 hours ago"
    assert time_ago(created.replace(tzinfo=None), now=now) == "2 hours ago"  # naive = UTC
    assert time_ago(dt.datetime.now(dt.UTC)) == "Less than a second ago"


@pytest.mark.parametrize(
    ("text", "ns", "string"),
    [
        ("1h30m", 5400000000000, "1h30m0s"),
        ("10s", 10000000000, "10s"),
        ("500ms", 500000000, "500ms"),
        ("1.5h", 5400000000000, "1h30m0s"),
        ("2us", 2000, "2µs"),
        ("2µs", 2000, "2µs"),
        ("0", 0, "0s"),
        ("-1.5s", -1500000000, "-1.5s"),
        ("+3m", 180000000000, "3m0s"),
        ("1.s", 1000000000, "1s"),
        (".5s", 500000000, "500ms"),
        ("1h2m3s4ms5us6ns", 3723004005006, "1h2m3.004005006s"),
        ("9223372036854775807ns", 9223372036854775807, "2562047h47m16.854775807s"),
        ("-9223372036854775808ns", -9223372036854775808, "-2562047h47m16.854775808s"),
        ("3.33333h", 11999988000000, "3h19m59.988s"),
        ("1.5ns", 1, "1ns"),
    ],
)
def test_parse_duration(text: str, ns: int, string: str) -> None:
    assert parse_duration_ns(text) == ns
    assert parse_duration(text) == ns / 1e9
    assert go_duration_string(ns) == string


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1", 'time: missing unit in duration "1"'),
        ("x", 'time: invalid duration "x"'),
        ("1x", 'time: unknown unit "x" in duration "1x"'),
        (".s", 'time: invalid duration ".s"'),
        ("", 'time: invalid duration ""'),
        ("1 s", 'time: unknown unit " s" in duration "1 s"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("100000000000h", 'time: invalid duration "100000000000h"'),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("text", "aligned"),
    [
        ("a\tb\tc\n", "a         b         c\n"),
        ("a\tb\nccccccccccccccccccc\tdd\n", "a                     b\nccccccccccccccccccc   dd\n"),
        ("a\n\tb\tc\nx\ty\n", "a\n          b         c\nx         y\n"),
        ("a\tb\t\nc\td\t\n", "a         b         \nc         d         \n"),
        (
            "x\ty\tz\nlong-long-long\t\tq\n\n\nx\ty\n",
            "x                y         z\nlong-long-long             q\n\n\nx         y\n",
        ),
        (
            "h1\th2\th3\n1\t2\n1\t2\t3\t4\n",
            "h1        h2        h3\n1         2\n1         2         3         4\n",
        ),
        ("no tabs\nat all\n", "no tabs\nat all\n"),
        ("a\tb", "a         b"),
        ("", ""),
        (
            "日本\tx\nab\ty\n",
            "日本      x\nab        y\n",
        ),  # wide runes count double, as docker/cli's fork does
    ],
)
def test_tabwrite_matches_go(text: str, aligned: str) -> None:
    assert tabwrite(text) == aligned


def test_tabwriter_rows() -> None:
    assert tabwriter([["NAME", "ID"], ["a-long-container-name", "1"]]) == (
        "NAME                    ID\na-long-container-name   1\n"
    )


PS_TABLE = (
    "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
)
PS_HEADERS = {
    "ID": "CONTAINER ID",
    "Image": "IMAGE",
    "Command": "COMMAND",
    "RunningFor": "CREATED",
    "Status": "STATUS",
    "Ports": "PORTS",
    "Names": "NAMES",
    "Labels": "LABELS",
}
ROWS = [
    {
        "ID": "3f4e5d6c7b8a",
        "Image": "busybox",
        "Command": "\"sh -c 'sleep 1000'\"",
        "RunningFor": "5 seconds ago",
        "Status": "Up 4 seconds",
        "Ports": "",
        "Names": "web",
        "Labels": "a=1,com.x.y-z=2",
        "_labels": {"a": "1", "com.x.y-z": "2"},
    },
    {
        "ID": "0123456789ab",
        "Image": "registry.example.com/team/app:1.0",
        "Command": '"/entrypoint.sh"',
        "RunningFor": "2 hours ago",
        "Status": "Exited (0) 1 hour ago",
        "Ports": "0.0.0.0:8080->80/tcp",
        "Names": "app_1",
        "Labels": "",
    },
]


def test_default_table_like_docker_ps() -> None:
    out = format_output(ROWS, None, PS_TABLE, headers=PS_HEADERS)
    assert out == (
        "CONTAINER ID   IMAGE                               COMMAND                CREATED         "
        "STATUS                  PORTS                  NAMES\n"
        "3f4e5d6c7b8a   busybox                             \"sh -c 'sleep 1000'\"   5 seconds ago   "
        "Up 4 seconds                                   web\n"
        '0123456789ab   registry.example.com/team/app:1.0   "/entrypoint.sh"       2 hours ago     '
        "Exited (0) 1 hour ago   0.0.0.0:8080->80/tcp   app_1\n"
    )
    assert format_output(ROWS, "table", PS_TABLE, headers=PS_HEADERS) == out
    assert format_output(ROWS, "", PS_TABLE, headers=PS_HEADERS) == out


def test_empty_table_prints_header_only() -> None:
    assert format_output([], None, PS_TABLE, headers=PS_HEADERS) == (
        "CONTAINER ID   IMAGE     COMMAND   CREATED   STATUS    PORTS     NAMES\n"
    )


def test_custom_table_and_escapes() -> None:
    # a literal backslash-t from the shell becomes a tab, as in docker/cli
    out = format_output(ROWS, "table {{.ID}}\\t{{.Names}}", PS_TABLE, headers=PS_HEADERS)
    assert out == "CONTAINER ID   NAMES\n3f4e5d6c7b8a   web\n0123456789ab   app_1\n"


def test_custom_template_has_no_header_and_real_tabs() -> None:
    out = format_output(ROWS, "{{.ID}}\\t{{.Names}}", PS_TABLE, headers=PS_HEADERS)
    assert out == "3f4e5d6c7b8a\tweb\n0123456789ab\tapp_1\n"
    assert format_output(ROWS, "  {{.Names}}  ", PS_TABLE) == "web\napp_1\n"  # spaces trimmed
    assert format_output([], "{{.Names}}", PS_TABLE) == ""


def test_json_format_like_formatter_contexts() -> None:
    out = format_output(ROWS, "json", PS_TABLE, headers=PS_HEADERS)
    first, second = out.splitlines()
    assert first.startswith(
        '{"Command":"\\"sh -c \'sleep 1000\'\\"","ID":"3f4e5d6c7b8a","Image":"busybox"'
    )
    assert "_labels" not in first
    assert '"Ports":"0.0.0.0:8080-\\u003e80/tcp"' in second  # json.Marshal escapes HTML
    assert format_output(ROWS, "{{json .}}", PS_TABLE) == out


def test_quiet_wins_over_format() -> None:
    for fmt in (None, "table {{.Names}}", "json", "{{.Names}}"):
        assert (
            format_output(ROWS, fmt, PS_TABLE, quiet_field="ID") == "3f4e5d6c7b8a\n0123456789ab\n"
        )


def test_header_functions_and_labels() -> None:
    fmt = 'table {{.Names | upper}}\t{{json .Labels}}\t{{.Label "com.x.y-z"}}\t{{pad .Status 1 1}}|'
    out = format_output(ROWS, fmt, PS_TABLE, headers=PS_HEADERS)
    assert out.splitlines() == [
        "NAMES     LABELS              y z        STATUS |",
        'WEB       "a=1,com.x.y-z=2"   2          Up 4 seconds |',
        'APP_1     ""                             Exited (0) 1 hour ago |',
    ]


def test_unknown_field_is_an_error_like_docker() -> None:
    with pytest.raises(TemplateError) as info:
        format_output(ROWS, "{{.Nmes}}", PS_TABLE, context_type="*formatter.ContainerContext")
    assert str(info.value) == (
        'template parsing error: template: :1:2: executing "" at <.Nmes>: '
        "can't evaluate field Nmes in type *formatter.ContainerContext"
    )
    with pytest.raises(TemplateError, match='function "nope" not defined'):
        format_output(ROWS, "{{nope .ID}}", PS_TABLE)


def test_conditionals_in_table_cells() -> None:
    images = [{"Repository": "busybox", "Tag": "latest", "CreatedSince": ""}]
    fmt = "table {{.Repository}}\t{{if .CreatedSince }}{{.CreatedSince}}{{else}}N/A{{end}}"
    out = format_output(
        images, fmt, fmt, headers={"Repository": "REPOSITORY", "CreatedSince": "CREATED"}
    )
    assert out == "REPOSITORY   CREATED\nbusybox      N/A\n"


def test_header_context_auto_names() -> None:
    h = HeaderContext(auto=True)
    assert h["CreatedSince"] == "CREATED SINCE"
    assert h["ID"] == "ID"
    assert h.Label("com.docker.compose.project") == "project"
    out = format_output(
        [{"ID": "x", "CreatedSince": "now"}], "table {{.ID}}\t{{.CreatedSince}}", ""
    )
    assert out == "ID        CREATED SINCE\nx         now\n"


def test_template_text_and_is_table() -> None:
    assert template_text("json") == "{{json .}}"
    assert template_text("table") == ""
    assert template_text("table {{.ID}}\\t{{.Names}}\\n") == "{{.ID}}\t{{.Names}}\n"
    assert is_table("table {{.ID}}") and not is_table("{{.ID}}")
