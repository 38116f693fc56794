"""Go text/template compatibility: expectations come from Go 1.19 text/template runs with
Docker's template functions (docker/cli templates package) on the same data."""

from __future__ import annotations

from typing import Any

import pytest

from dockyard import records
from dockyard.cli import gofmt
from dockyard.cli.gotemplate import TemplateError, compile, render
from dockyard.errors import InvalidArgument

DATA: dict[str, Any] = {
    "Id": "abc123def456",
    "Name": "/web",
    "Args": ["-c", "echo hi", "x<y&z"],
    "State": {"Status": "running", "Running": True, "ExitCode": 0, "Pid": 1234, "Health": None},
    "Config": {
        "Labels": {"com.example.vendor": "ACME", "version": "1.0", "b": "x"},
        "Env": ["A=1", "B=2"],
        "Tty": False,
    },
    "Mounts": [
        {"Source": "/a", "Destination": "/b", "RW": True},
        {"Source": "/c", "Destination": "/d", "RW": False},
    ],
    "Num": 42,
    "Float": 1.5,
    "Big": 123456789.5,
    "Neg": -3,
    "Empty": "",
    "EmptyList": [],
    "EmptyMap": {},
    "Nested": {"A": {"B": {"C": "deep"}}},
    "Html": "<b>&</b>",
    "Unicode": "héllo wörld",
    "Mixed": [1, "a", None, True, 2.5],
    "Nums": [3, 1, 2],
    "IntMap": {"x": 1, "y": 2},
}

CASES = [
    # fields, nesting, dot, maps
    ("{{.Id}}", "abc123def456"),
    ("{{.Name}}|{{.State.Status}}|{{.State.ExitCode}}|{{.State.Running}}", "/web|running|0|true"),
    ("{{.Config.Labels}}", "map[b:x com.example.vendor:ACME version:1.0]"),
    ("{{.Config.Labels.version}}|{{.Config.Labels.missing}}", "1.0|<no value>"),
    ('{{index .Config.Labels "com.example.vendor"}}', "ACME"),
    ("{{.Nested.A.B.C}} {{.Nested.A.X.C}}", "deep <no value>"),
    ("{{.Missing}} {{.Missing.X.Y}}", "<no value> <no value>"),
    (
        "{{.Float}} {{.Big}} {{.Neg}} {{.Mixed}} {{.Nums}} {{.IntMap}}",
        "1.5 1.234567895e+08 -3 [1 a <nil> true 2.5] [3 1 2] map[x:1 y:2]",
    ),
    (
        "{{.Mounts}}",
        "[map[Destination:/b RW:true Source:/a] map[Destination:/d RW:false Source:/c]]",
    ),
    (
        "{{len .EmptyMap}} {{.EmptyMap}} {{.EmptyList}} {{json .EmptyList}} {{json .EmptyMap}}",
        "0 map[] [] [] {}",
    ),
    ("{{$}}", None),  # checked separately: prints the whole map
    ("{{(index .Mounts 1).Source}} {{(index .Mounts 0).RW}}", "/c true"),
    ("{{(.State).Status}}", "running"),
    ('{{index (index .Mounts 1) "Source"}}', "/c"),
    ('{{index .Nested "A" "B" "C"}}', "deep"),
    # index, slice, len
    ("{{index .Args 0}}|{{index .Args 1}}", "-c|echo hi"),
    ('{{index .Nums 1}} {{index .IntMap "x"}} {{index "abc" 1}}', "1 1 98"),
    (
        '{{slice .Args 1}} {{slice "hello" 1 3}} {{slice .Args}}',
        "[echo hi x<y&z] el [-c echo hi x<y&z]",
    ),
    ('{{len .Args}} {{len .Config.Labels}} {{len .Unicode}} {{len "abc"}}', "3 3 13 3"),
    # range
    ("{{range .Mounts}}{{.Source}}:{{.Destination}} {{end}}", "/a:/b /c:/d "),
    ("{{range $i, $m := .Mounts}}{{$i}}={{$m.Source}},{{end}}", "0=/a,1=/c,"),
    (
        "{{range $k, $v := .Config.Labels}}{{$k}}={{$v}};{{end}}",
        "b=x;com.example.vendor=ACME;version=1.0;",
    ),
    ("{{range $e := .Args}}[{{$e}}]{{end}}", "[-c][echo hi][x<y&z]"),
    ("{{range .IntMap}}{{.}}{{end}}", "12"),
    (
        "{{range .EmptyList}}x{{else}}empty{{end}}|{{range .Missing}}x{{else}}missing{{end}}",
        "empty|missing",
    ),
    ("{{range $i, $e := .Args}}{{if eq $i 1}}{{break}}{{end}}{{$e}}{{end}}", "-c"),
    ("{{range $i, $e := .Nums}}{{if eq $i 1}}{{continue}}{{end}}{{$e}}{{end}}", "32"),
    ("{{$.Name}}{{range .Mounts}}{{$.Name}}{{.Source}}{{end}}", "/web/web/a/web/c"),
    ("{{range 3}}{{.}}{{end}}", "012"),  # Go 1.22+ range over int (Docker 25+ builds)
    # if / else if / with
    (
        '{{if eq .State.Status "running"}}R{{else if eq .State.Status "exited"}}E{{else}}O{{end}}',
        "R",
    ),
    ('{{if eq .State.Status "exited" "running"}}multi{{end}}', "multi"),
    ('{{if 0}}a{{else if ""}}b{{else if .Nums}}c{{end}}', "c"),
    ("{{with .State}}{{.Pid}}{{end}}|{{with .Empty}}x{{else}}noempty{{end}}", "1234|noempty"),
    ("{{with $m := index .Mounts 0}}{{$m.Source}}{{.RW}}{{end}}", "/atrue"),
    ('{{if and (eq .State.Status "running") (gt .State.Pid 0)}}ok{{end}}', "ok"),
    ("{{if or .Empty (not .State.Running)}}a{{else}}b{{end}}", "b"),
    ("{{if not .Config.Labels}}none{{else}}some{{end}}", "some"),
    # variables
    ("{{$x := .Num}}{{$x}}{{$x = 7}}{{$x}}", "427"),
    ("{{$x := 1}}{{if true}}{{$x = 2}}{{$y := 3}}{{end}}{{$x}}", "2"),
    # whitespace trimming and comments
    ("a  {{- /* c */ -}}  b", "ab"),
    ("x {{- .Name}} y|x {{.Name -}} y", "x/web y|x /weby"),
    ("{{.Name -}}\n\n  x", "/webx"),
    ("  \n {{- .Name}}", "/web"),
    ("{{- 3}} {{-3}}", "3 -3"),
    ("{{ .Name }}{{/* x */}}{{ .Name }}", "/web/web"),
    ("{{ range .Args }} {{ . }} {{ end }}", " -c  echo hi  x<y&z "),
    # literals
    (
        "{{\"raw\"}} {{`back\\tick`}} {{'a'}} {{1.5}} {{0x1F}} {{1e3}} {{-4}} {{true}} {{017}}",
        "raw back\\tick 97 1.5 31 1000 -4 true 15",
    ),
    ('{{"\\x41\\101\\u00e9\\U0001F600"}} {{"\\t"}}', "AAé😀 \t"),
    ("{{0b101}} {{0o17}} {{1_000}} {{.5}} {{+3}} {{0x1p4}}", "5 15 1000 0.5 3 16"),
    (
        "{{1e25}} {{1e-7}} {{123456.0}} {{1234567.0}} {{0.00001}} {{0.0001}} {{100.0}}",
        "1e+25 1e-07 123456 1.234567e+06 1e-05 0.0001 100",
    ),
    # pipelines
    ("{{.Name | upper}}|{{.Name | lower}}|{{upper .Name}}", "/WEB|/web|/WEB"),
    ('{{.Name | printf "%s"  |  upper}}', "/WEB"),
    ('{{.Args | len | printf "%d args"}}', "3 args"),
    ('{{.Name | printf "%s-%s" "a"}}', "a-/web"),
    ('{{"a" | eq "a"}} {{.Num | eq 42}} {{.State.ExitCode | eq 0}}', "true true true"),
    ('{{.Num | print}} {{.Missing | printf "%v"}}', "42 <nil>"),
    ('{{.State.ExitCode | printf "%03d"}}', "000"),
    # comparisons and logic
    (
        '{{and .Num .Empty}}|{{or .Empty .Num}}|{{not .Empty}}|{{and 1 2 3}}|{{or 0 ""}}',
        "|42|true|3|",
    ),
    (
        '{{lt 1 2}} {{le 2 2}} {{gt "b" "a"}} {{ge 1 2}} {{ne .Num 42}}',
        "true true true false false",
    ),
    ('{{eq nil nil}} {{eq .Missing "x"}} {{lt 1.5 2.5}}', "true false true"),
    # printing
    (
        '{{printf "%-10s|%5d|%q|%x|%v|%.2f" .Name .Num .Name .Num .Args .Float}}',
        '/web      |   42|"/web"|2a|[-c echo hi x<y&z]|1.50',
    ),
    (
        '{{printf "%s" .Num}} {{printf "%d"}} {{printf "%d" 1 2}}',
        "%!s(int=42) %!d(MISSING) 1%!(EXTRA int=2)",
    ),
    ('{{print 1 2 "a" "b" 3}} {{println "x" 1}}', "1 2ab3 x 1\n"),
    ('{{printf "%v %s %d" true nil 1.5}}', "true %!s(<nil>) %!d(float64=1.5)"),
    (
        '{{printf "%08.3f|%+d|%x|%X|%o|%b|%c|%U" 3.14159 5 255 255 8 5 65 65}}',
        "0003.142|+5|ff|FF|10|101|A|U+0041",
    ),
    (
        '{{printf "%5.1f%%" .Float}} {{printf "%-5s|" .Empty}} {{printf "%T" .Num}}',
        "  1.5%      | int",
    ),
    (
        '{{printf "%v" .Config.Labels}} {{printf "%d" .Nums}} {{printf "%q" .Args}}',
        'map[b:x com.example.vendor:ACME version:1.0] [3 1 2] ["-c" "echo hi" "x<y&z"]',
    ),
    ('{{printf "%10v|" .Nums}}', "[         3          1          2]|"),
    ('{{printf "%[2]s %[1]s" "a" "b"}}', "b a"),
    ('{{printf "%q" "\\u2028\\x01é"}}', '"\\u2028\\x01é"'),
    # Go builtins html/js/urlquery
    (
        '{{html .Html}} {{js "a\'b\\"<>="}} {{urlquery "a b&c/d"}}',
        "&lt;b&gt;&amp;&lt;/b&gt; a\\'b\\\"\\u003C\\u003E\\u003D a+b%26c%2Fd",
    ),
    # Docker's functions
    # dicts keep insertion order in JSON (they stand for Go structs); Go maps would sort
    (
        "{{json .Config}}",
        '{"Labels":{"com.example.vendor":"ACME","version":"1.0","b":"x"},"Env":["A=1","B=2"],"Tty":false}',
    ),
    ("{{json .Args}} {{json .Html}}", '["-c","echo hi","x<y&z"] "<b>&</b>"'),
    (
        "{{json .Float}} {{json .Big}} {{json .Missing}} {{json .State.Health}}",
        "1.5 123456789.5 null null",
    ),
    (
        "{{json 1.0e25}} {{json 1.0e-7}} {{json 0.1}} {{json 100000000000000000000.0}} {{json 1e21}}",
        "1e+25 1e-7 0.1 100000000000000000000 1e+21",
    ),
    ('{{json "\\u2028\\n\\t\\u0001"}} {{json .Unicode}}', '"\\u2028\\n\\t\\u0001" "héllo wörld"'),
    (
        '{{join .Args ","}}|{{join .Config.Env " "}}|{{join .Nums "+"}}|{{join .Config.Labels ","}}',
        "-c,echo hi,x<y&z|A=1 B=2|3+1+2|1.0,ACME,x",
    ),
    ('{{join .Mixed "-"}} {{join .Missing ","}}', "1-a-<nil>-true-2.5 "),
    (
        '{{split "a,b,c" ","}}|{{len (split "a,b,c" ",")}}|{{index (split "a:b" ":") 1}}',
        "[a b c]|3|b",
    ),
    ('{{split "abc" ""}} {{split "" ","}} {{len (split "" "")}}', "[a b c] [] 0"),
    (
        '{{pad .Name 2 3}}|{{pad "" 2 3}}|{{truncate .Id 5}}|{{truncate "ab" 5}}',
        "  /web   ||abc12|ab",
    ),
    ('{{title "hello world-foo_bar baz.qux"}}', "Hello World-Foo_bar Baz.Qux"),
    (
        '{{title "hello  WORLD"}} {{title "x1y z_a"}} {{title "élan vital"}} {{title "o\'neil"}}',
        "Hello  WORLD X1y Z_a Élan Vital O'Neil",
    ),
    ('{{lower "ÀB"}} {{upper "straße"}} {{.Unicode | title}}', "àb STRAßE Héllo Wörld"),
]


@pytest.mark.parametrize(("text", "expected"), [c for c in CASES if c[1] is not None])
def test_render_matches_go(text: str, expected: str) -> None:
    assert render(text, DATA) == expected


ERRORS = [
    ("{{foo}}", 'template: :1: function "foo" not defined'),
    ("{{.Name", "template: :1: unclosed action"),
    ("{{.Name\n", "template: :2: unclosed action started at :1"),
    ("{{if .Name}}x", "template: :1: unexpected EOF"),
    ("{{end}}", "template: :1: unexpected {{end}}"),
    ("{{else}}", "template: :1: unexpected {{else}}"),
    ("{{/* unclosed", "template: :1: unclosed comment"),
    ("{{/* c */ .Name}}", "template: :1: comment ends before closing delimiter"),
    ("{{$x}}", 'template: :1: undefined variable "$x"'),
    ('{{.Name | "x"}}', "template: :1: non executable command in pipeline stage 2"),
    ("{{}}", "template: :1: missing value for command"),
    ("{{if}}{{end}}", "template: :1: missing value for if"),
    ("{{break}}", "template: :1: {{break}} outside {{range}}"),
    ("{{.Name)}}", 'template: :1: unexpected ")" in command'),
    ("{{(.Name}}", "template: :1: unclosed left paren"),
    ("{{.Name @}}", 'template: :1: unexpected "@" in operand'),
    ('{{"unterminated}}', "template: :1: unterminated quoted string"),
    ("{{`unterminated}}", "template: :1: unterminated raw quoted string"),
    ("{{1x}}", 'template: :1: bad number syntax: "1x"'),
    ("{{99999999999999999999}}", 'template: :1: integer overflow: "99999999999999999999"'),
    ("{{range $a, $b, $c := .Nums}}{{end}}", "template: :1: too many declarations in range"),
    ("{{if .Num}}{{else}}{{else}}{{end}}", "template: :1: expected end; found {{else}}"),
    ('{{"a".X}}', 'template: :1: unexpected . after term "\\"a\\""'),
    ("a\nb\n{{end}}", "template: :3: unexpected {{end}}"),
    # execution errors: position is line:byte-column of the failing node
    ("{{.Foo.Bar}}x", None),
    # Go says "interface {}" for JSON-decoded data, "string" for Docker's typed structs
    (
        "{{.Name.Foo}}",
        'template: :1:7: executing "" at <.Name.Foo>: can\'t evaluate field Foo in type string',
    ),
    (
        "{{index .Args 9}}",
        'template: :1:2: executing "" at <index .Args 9>: error calling index: index out of range: 9',
    ),
    (
        "line1\n  {{index .Args 9}}",
        'template: :2:4: executing "" at <index .Args 9>: error calling index: index out of range: 9',
    ),
    (
        "{{index .Num 1}}",
        'template: :1:2: executing "" at <index .Num 1>: error calling index: can\'t index item of type int',
    ),
    (
        "{{index .Missing 1}}",
        'template: :1:2: executing "" at <index .Missing 1>: error calling index: index of untyped nil',
    ),
    (
        "{{len .Num}}",
        'template: :1:2: executing "" at <len .Num>: error calling len: len of type int',
    ),
    (
        "{{upper .Num}}",
        'template: :1:8: executing "" at <.Num>: wrong type for value; expected string; got int',
    ),
    (
        "{{upper .Missing}}",
        'template: :1:8: executing "" at <.Missing>: invalid value; expected string',
    ),
    ("{{upper 3}}", 'template: :1:8: executing "" at <3>: expected string; found 3'),
    ('{{pad .Name "a" 1}}', 'template: :1:12: executing "" at <"a">: expected integer; found "a"'),
    (
        '{{join .Name ","}}',
        'template: :1:2: executing "" at <join .Name ",">: error calling join: expected slice, got string',
    ),
    (
        "{{join .Args}}",
        'template: :1:2: executing "" at <join>: wrong number of args for join: want 2 got 1',
    ),
    (
        '{{eq .Num "x"}}',
        'template: :1:2: executing "" at <eq .Num "x">: error calling eq: incompatible types for comparison',
    ),
    (
        "{{lt true false}}",
        'template: :1:2: executing "" at <lt true false>: error calling lt: invalid type for comparison',
    ),
    (
        "{{eq .Num}}",
        'template: :1:2: executing "" at <eq .Num>: error calling eq: missing argument for comparison',
    ),
    (
        "{{and}}",
        'template: :1:2: executing "" at <and>: wrong number of args for and: want at least 1 got 0',
    ),
    ("{{nil}}", 'template: :1:2: executing "" at <nil>: nil is not a command'),
    (
        '{{"x" .Name}}',
        'template: :1:2: executing "" at <"x">: can\'t give argument to non-function "x"',
    ),
    (
        "{{.Name 1}}",
        'template: :1:2: executing "" at <.Name>: Name is not a method but has arguments',
    ),
    (
        "{{range .Name}}x{{end}}",
        'template: :1:8: executing "" at <.Name>: range can\'t iterate over /web',
    ),
    (
        "{{.State.Health.Status}}",
        'template: :1:8: executing "" at <.State.Health.Status>: nil pointer evaluating interface {}.Status',
    ),
]


@pytest.mark.parametrize(("text", "message"), [e for e in ERRORS if e[1] is not None])
def test_errors_read_like_docker(text: str, message: str) -> None:
    with pytest.raises(TemplateError) as info:
        compile(text).execute(DATA)
    assert info.value.detail == message
    assert str(info.value) == "template parsing error: " + message
    assert isinstance(info.value, InvalidArgument)
    assert info.value.exit_code == 125


def test_missing_field_on_struct_is_an_error() -> None:
    @records.record
    class State:
        Status: str
        ExitCode: int

    assert render("{{.Status}} {{.ExitCode}} {{.}}", State("exited", 3)) == "exited 3 {exited 3}"
    with pytest.raises(TemplateError, match="can't evaluate field Foo in type State"):
        render("{{.Foo}}", State("exited", 3))


def test_methods_are_called_with_arguments() -> None:
    class Ctx:
        def __init__(self) -> None:
            self.labels = {"a.b": "1"}

        def Label(self, name: str) -> str:  # noqa: N802
            return self.labels.get(name, "")

        def Names(self) -> str:  # noqa: N802
            return "web"

    assert render('{{.Names}}|{{.Label "a.b"}}|{{"a.b" | .Label}}', Ctx()) == "web|1|1"


def test_dict_methods_do_not_shadow_keys() -> None:
    assert render("{{.items}} {{.keys}}", {"items": "I", "keys": "K"}) == "I K"


def test_index_on_string_maps_gives_empty_string() -> None:
    # Docker's labels are map[string]string: a missing key is the zero value "".
    assert render('[{{index .L "nope"}}]', {"L": {"a": "b"}}) == "[]"
    assert render('[{{index .L "nope"}}]', {"L": {}}) == "[]"
    assert render('[{{index .L "nope"}}]', {"L": {"a": 1}}) == "[<no value>]"


def test_nil_and_missing_print_like_go() -> None:
    assert render("{{.A}}|{{.B}}|{{print .B}}", {"A": None}) == "<nil>|<no value>|<nil>"
    assert render("{{$}}", {"b": 1, "a": [True]}) == "map[a:[true] b:1]"


def test_json_of_dataclass_keeps_field_order() -> None:
    @records.record
    class Port:
        PrivatePort: int
        Type: str
        IP: str | None = None

    assert render("{{json .}}", Port(80, "tcp")) == '{"PrivatePort":80,"Type":"tcp","IP":null}'


def test_compile_is_cached_and_reusable() -> None:
    t = compile("{{.A}}-{{.B}}")
    assert compile("{{.A}}-{{.B}}") is t
    assert [t.execute({"A": i, "B": i * 2}) for i in range(3)] == ["0-0", "1-2", "2-4"]


def test_header_mode_uses_docker_header_functions() -> None:
    t = compile(
        '{{upper .Name}}\t{{json .Labels}}\t{{truncate .ID 3}}\t{{pad .Size 1 1}}\t{{split .X ","}}'
    )
    headers = {
        "Name": "NAMES",
        "Labels": "LABELS",
        "ID": "CONTAINER ID",
        "Size": "SIZE",
        "X": "X Y",
    }
    assert t.execute_header(headers) == "NAMES\tLABELS\tCONTAINER ID\t SIZE \tX Y"
    # Docker ignores header errors and keeps what was written
    assert compile("A{{json .}}B").execute_header({"x": "y"}) == "A"


def test_sprintf_verbs() -> None:
    assert gofmt.sprintf(
        "%6.2f|%-8.3s|%.2s|%*d|%-*d|%.*f", 3.14159, "abcdef", "日本語", 5, 42, 4, 7, 2, 2.0
    ) == ("  3.14|abc     |日本|   42|7   |2.00")
    assert (
        gofmt.sprintf("%+d % d %+.2e %G %E", 5, 5, 12345.678, 1e-7, 1e7)
        == "+5  5 +1.23e+04 1E-07 1.000000E+07"
    )
    assert (
        gofmt.sprintf("%x|% x|%#q|%+q|%q", "héllo", "hi", "a`b", "é", ord("x"))
        == '68c3a96c6c6f|68 69|"a`b"|"\\u00e9"|\'x\''
    )
    assert gofmt.sprintf("%!|%z|%", 1) == "%!!(int=1)|%!z(MISSING)|%!(NOVERB)"
    assert gofmt.sprintf("%05d|%-05d|%#x|%#o|%O", -42, 3, 255, 8, 8) == "-0042|3    |0xff|010|0o10"
    assert (
        gofmt.sprintf("%s|%v|%d", [1, "a"], {"k": None}, True)
        == "[%!s(int=1) a]|map[k:<nil>]|%!d(bool=true)"
    )


def test_float_formatting_matches_go() -> None:
    cases = {
        1e6: "1e+06",
        123456.0: "123456",
        1234567.0: "1.234567e+06",
        1e20: "1e+20",
        1.5e-5: "1.5e-05",
        0.0001: "0.0001",
        3.0: "3",
        0.1: "0.1",
    }
    for value, text in cases.items():
        assert gofmt.format_float(value) == text
    assert (
        gofmt.json_encode([1e-7, 1e21, 1e20, -0.000001, 2.5])
        == "[1e-7,1e+21,100000000000000000000,-0.000001,2.5]"
    )
    with pytest.raises(TemplateError, match="error calling json: json: unsupported value: NaN"):
        render("{{json .}}", float("nan"))


def test_json_escaping_modes() -> None:
    assert gofmt.json_encode("<a&b>") == '"<a&b>"'
    assert gofmt.json_encode("<a&b>", escape_html=True) == '"\\u003ca\\u0026b\\u003e"'
    assert gofmt.json_encode({"b": 1, "a": 2}) == '{"b":1,"a":2}'
    assert gofmt.json_encode({"b": 1, "a": 2}, sort_keys=True) == '{"a":2,"b":1}'
    assert gofmt.json_encode(b"hi") == '"aGk="'


def test_missingkey_error_option_like_docker_inspect_fallback() -> None:
    t = compile("{{.A}}{{.X}}")
    assert t.execute({"A": 1}) == "1<no value>"
    with pytest.raises(TemplateError) as info:
        t.execute({"A": 1}, missingkey_error=True)
    assert info.value.detail == 'template: :1:8: executing "" at <.X>: map has no entry for key "X"'
    assert not info.value.at_parse
    with pytest.raises(TemplateError) as parse_info:
        compile("{{.A")
    assert parse_info.value.at_parse


def test_printf_error_forms_and_padding_follow_go() -> None:
    # checked against Go 1.19 fmt: bad verbs keep the flags, %x of 0 with .0 prints nothing
    assert gofmt.sprintf("%-5c|", "x") == "%!c(string=x    )|"
    assert gofmt.sprintf("%+5.1d", 1e-07) == "%!d(float64=+1e-07)"
    assert (
        gofmt.sprintf("%#08x|%08.3d|%+06.1f|%06d", 255, 7, 2.5, -42)
        == "0x000000ff|     007|+002.5|-00042"
    )
    assert gofmt.sprintf("%#1.x|%5v|% v", 0, float("inf"), float("nan")) == " | +Inf| NaN"
    assert gofmt.sprintf("%.*d|%*d", -1, 5, -4, 3) == "%!(BADPREC)5|3   "
    assert gofmt.sprintf("%#v %#v", "a", ["b", 1]) == '"a" []interface {}{"b", 1}'
