"""Dockerfile parsing, instruction checks, variable substitution and .dockerignore
matching -- pure units, no engine (compared with what Docker's parser and lexer do)."""

from __future__ import annotations

import pytest

from dockyard.build import BuildError
from dockyard.build import instructions as ins
from dockyard.build.ignore import Matcher, read_patterns
from dockyard.build.imageconfig import dest_path, go_duration, go_quote_list, parse_ports
from dockyard.build.parser import ParseError, parse
from dockyard.build.shell import Lexer, ShellError


def nodes(text: str) -> list[tuple[str, list[str], bool, int, int]]:
    return [(n.cmd, n.args, n.json, n.start_line, n.end_line) for n in parse(text).nodes]


# -- lines ---------------------------------------------------------------------------


def test_continuations_keep_inner_whitespace_and_skip_comments() -> None:
    text = "FROM busybox\nRUN echo a \\\n  # a comment line\n  b \\\n\n  c\nCMD x\n"
    assert nodes(text) == [
        ("FROM", ["busybox"], False, 1, 1),
        ("RUN", ["echo a   b   c"], False, 2, 6),
        ("CMD", ["x"], False, 7, 7),
    ]
    assert parse(text).warnings  # the empty continuation line is warned about


def test_double_escape_at_end_is_not_a_continuation() -> None:
    assert nodes("FROM a\nRUN echo \\\\\nRUN b\n")[1][1] == ["echo \\\\"]


def test_escape_directive_and_windows_style_continuation() -> None:
    text = "# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY c:\\dir\\ d\n"
    df = parse(text)
    assert df.escape == "`"
    assert [n.args for n in df.nodes] == [["busybox"], ["echo a   b"], ["c:\\dir\\", "d"]]


def test_directives_only_at_the_top() -> None:
    df = parse("# syntax=docker/dockerfile:1\n# escape=\\\n\n# escape=`\nFROM a\n")
    assert df.directives == {"syntax": "docker/dockerfile:1", "escape": "\\"}
    assert df.escape == "\\"
    with pytest.raises(ParseError, match="only one escape parser directive"):
        parse("# escape=\\\n# escape=`\nFROM a\n")


def test_json_and_shell_forms() -> None:
    got = nodes('FROM a\nCMD ["echo", "hi there"]\nCMD [ "unterminated"\nENTRYPOINT echo "x"\n')
    assert got[1][1:3] == (["echo", "hi there"], True)
    assert got[2][1:3] == (['[ "unterminated"'], False)
    assert got[3][1:3] == (['echo "x"'], False)
    with pytest.raises(ParseError, match="strings only"):
        parse('FROM a\nRUN ["a", 1]\n')


def test_flags_and_env_forms() -> None:
    df = parse("FROM a\nCOPY --from=b --chown='1 2' x y\nENV A=1 B=\"two words\"\nENV C d e\n")
    copy, env_new, env_old = df.nodes[1:]
    assert copy.flags == ["--from=b", "--chown=1 2"] and copy.args == ["x", "y"]
    assert env_new.args == ["A", "1", "=", "B", '"two words"', "="]
    assert env_old.args == ["C", "d e", ""]


def test_heredocs() -> None:
    text = (
        "FROM a\nRUN <<EOF\necho hi\necho there\nEOF\n"
        "COPY <<-'X' <<Y /dst/\n\tno $expand\n\tX\n$expand\nY\n"
        "RUN python3 <<PY > /out\nprint(1)\nPY\nCMD done\n"
    )
    df = parse(text)
    run, copy, run2, cmd = df.nodes[1:]
    assert [(h.name, h.content, h.expand) for h in run.heredocs] == [
        ("EOF", "echo hi\necho there\n", True)
    ]
    assert (run.start_line, run.end_line) == (2, 5)
    assert [(h.name, h.content, h.expand, h.chomp) for h in copy.heredocs] == [
        ("X", "\tno $expand\n", False, True),
        ("Y", "$expand\n", True, False),
    ]
    assert run2.heredocs[0].content == "print(1)\n"
    assert cmd.args == ["done"] and cmd.start_line == 14
    parsed = ins.parse_instruction(copy)
    assert isinstance(parsed, ins.Copy)
    assert [(c.path, c.data) for c in parsed.contents] == [
        ("X", "no $expand\n"),
        ("Y", "$expand\n"),
    ]
    with pytest.raises(ParseError, match="Dockerfile:2: unterminated heredoc"):
        parse("FROM a\nRUN <<EOF\necho\n")


def test_comments_and_bom() -> None:
    assert nodes("\ufeff# c\n\n  # indented\nFROM a # not a comment\n") == [
        ("FROM", ["a", "#", "not", "a", "comment"], False, 4, 4)
    ]
    with pytest.raises(ParseError, match="file with no instructions"):
        parse("# only comments\n")


# -- instructions ----------------------------------------------------------------------


def stages_of(text: str) -> tuple[list[ins.Stage], list[ins.Arg]]:
    return ins.parse_stages(parse(text))


def test_stages_and_meta_args() -> None:
    stages, meta = stages_of("ARG V=1\nFROM a:$V AS Build\nRUN x\nFROM build\nCOPY --from=0 / /\n")
    assert [m.pairs[0].key for m in meta] == ["V"]
    assert [(s.base, s.name) for s in stages] == [("a:$V", "build"), ("build", "")]
    assert isinstance(stages[1].commands[0], ins.Copy)
    assert stages[1].commands[0].source == "0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("FROM a\nFOO bar\n", "Dockerfile:2: unknown instruction: FOO"),
        ("RUN x\n", "Dockerfile:1: no build stage"),
        ("FROM a\nCOPY x\n", "COPY requires at least two arguments"),
        ("FROM a\nENV A\n", "Dockerfile:2: ENV must have two arguments"),
        ("FROM a\nWORKDIR\n", "WORKDIR requires exactly one argument"),
        ("FROM a AS 1x\n", "invalid name for build stage"),
        ("FROM a b\n", "FROM requires either one or three arguments"),
        ("FROM a\nCOPY --bogus=1 x y\n", "Dockerfile:2: unknown flag: bogus"),
        ("FROM a\nSHELL /bin/bash -c\n", "SHELL requires the arguments to be in JSON form"),
        ("FROM a\nHEALTHCHECK --interval=1x CMD true\n", 'invalid duration "1x"'),
        ("FROM a\nONBUILD FROM b\n", "FROM isn't allowed as an ONBUILD trigger"),
        ("FROM a\nLABEL =x\n", "LABEL names can not be blank"),
    ],
)
def test_instruction_errors_name_file_and_line(text: str, message: str) -> None:
    with pytest.raises(BuildError, match=message.replace("(", r"\(")) as info:
        stages_of(text)
    assert "\n" not in str(info.value)


def test_healthcheck_and_onbuild() -> None:
    stages, _ = stages_of(
        "FROM a\nHEALTHCHECK --interval=1m30s --retries=2 CMD curl -f x\n"
        "HEALTHCHECK NONE\nONBUILD RUN echo child\n"
    )
    check, none, onbuild = stages[0].commands
    assert isinstance(check, ins.Healthcheck) and isinstance(none, ins.Healthcheck)
    assert check.test == ["CMD-SHELL", "curl -f x"] and check.interval == 90_000_000_000
    assert check.retries == 2 and none.test == ["NONE"]
    assert isinstance(onbuild, ins.Onbuild) and onbuild.expression == "RUN echo child"


# -- variable substitution -------------------------------------------------------------

ENV = {"A": "apple", "E": "", "S": "one two", "P": "/usr/local/bin/tool.tar.gz"}


@pytest.mark.parametrize(
    ("word", "expected"),
    [
        ("$A", "apple"),
        ("${A}s", "apples"),
        ("$A$A", "appleapple"),
        ("${X:-dflt}", "dflt"),
        ("${E:-dflt}", "dflt"),
        ("${E-dflt}", ""),
        ("${A:+set}", "set"),
        ("${E:+set}", ""),
        ("${E+set}", "set"),
        ("${X+set}", ""),
        ("'$A'", "$A"),
        ('"$A"', "apple"),
        ('"\\$A"', "$A"),
        ("\\$A", "$A"),
        ('"a\\b"', "a\\b"),
        ("$", "$"),
        ("${X:-${A}}", "apple"),
        ("${P#*/}", "usr/local/bin/tool.tar.gz"),
        ("${P##*/}", "tool.tar.gz"),
        ("${P%.*}", "/usr/local/bin/tool.tar"),
        ("${P%%.*}", "/usr/local/bin/tool"),
        ("${A/p/P}", "aPple"),
        ("${A//p/P}", "aPPle"),
        ("$1x", "x"),
    ],
)
def test_process_word(word: str, expected: str) -> None:
    assert Lexer().process_word(word, ENV) == expected


def test_process_words_splits_unquoted_expansions() -> None:
    assert Lexer().process_words('$S "$S" x', ENV) == ["one", "two", "one two", "x"]


@pytest.mark.parametrize(
    ("word", "message"),
    [
        ("${X:?must be set}", "X: must be set"),
        ("${E:?}", "E: is not allowed to be empty"),
        ("${X?}", "X: is not allowed to be unset"),
        ("${A", "missing '}'"),
        ("${}", "bad substitution"),
        ("'open", "matching single-quote"),
        ('"open', "matching double-quote"),
    ],
)
def test_process_word_errors(word: str, message: str) -> None:
    with pytest.raises(ShellError, match=message.replace("?", r"\?")):
        Lexer().process_word(word, ENV)


def test_backtick_escape() -> None:
    assert Lexer("`").process_word("a`$A b\\c", ENV) == "a$A b\\c"


# -- .dockerignore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "path", "excluded"),
    [
        (["*.tmp"], "a.tmp", True),
        (["*.tmp"], "dir/a.tmp", False),
        (["**/*.tmp"], "dir/sub/a.tmp", True),
        (["**/*.tmp"], "a.tmp", True),
        (["dir"], "dir/sub/file", True),
        (["/dir"], "dir/file", True),
        (["dir/*"], "dir", False),
        (["dir/*/x"], "dir/a/x", True),
        (["dir/*/x"], "dir/a/b/x", False),
        (["file?.txt"], "file1.txt", True),
        (["file?.txt"], "file10.txt", False),
        (["[ab].txt"], "b.txt", True),
        (["*", "!keep"], "keep", False),
        (["*", "!keep"], "other", True),
        (["dir", "!dir/keep"], "dir/keep", False),
        (["dir", "!dir/keep"], "dir/other", True),
        (["!x", "x"], "x", True),
        (["dir/**"], "dir/a/b", True),
        (["dir/**"], "dir", False),
        (["a\\*b"], "a*b", True),
        (["a\\*b"], "axb", False),
        ([".git"], ".git/config", True),
        (["./build/../out"], "out/x", True),
    ],
)
def test_dockerignore_matching(patterns: list[str], path: str, excluded: bool) -> None:
    assert Matcher(read_patterns("\n".join(patterns))).excluded(path) is excluded


def test_read_patterns_normalizes() -> None:
    text = "# comment\n\n  /abs/path  \n!/keep/./me\nsub//dir/\n"
    assert read_patterns(text) == ["abs/path", "!keep/me", "sub/dir"]


def test_exception_patterns_make_walks_descend() -> None:
    matcher = Matcher(["dir", "!dir/sub/keep"])
    assert matcher.may_include_below("dir") and matcher.may_include_below("dir/sub")
    assert not matcher.may_include_below("other")


# -- image config text ---------------------------------------------------------------------


def test_go_formatting() -> None:
    assert go_quote_list(["/bin/sh", "-c", 'echo "hi"\n']) == '["/bin/sh" "-c" "echo \\"hi\\"\\n"]'
    assert [
        go_duration(v) for v in (0, 3_000_000_000, 90_000_000_000, 1_500_000, 3_600_000_000_000)
    ] == [
        "0s",
        "3s",
        "1m30s",
        "1.5ms",
        "1h0m0s",
    ]
    assert parse_ports(["80", "53/UDP", "7000-7001"]) == [
        "80/tcp",
        "53/udp",
        "7000/tcp",
        "7001/tcp",
    ]


def test_dest_paths() -> None:
    assert dest_path("/app", ".") == "/app/"
    assert dest_path("/app", "sub") == "/app/sub"
    assert dest_path("/app", "sub/") == "/app/sub/"
    assert dest_path("/app", "/abs") == "/abs"
    assert dest_path("/", "../x") == "/x"


def test_against_docker_parser_when_available() -> None:
    """The ``dockerfile`` package binds BuildKit's Go parser: same nodes as ours."""
    godf = pytest.importorskip("dockerfile")
    text = (
        "# escape=\\\nARG B=busybox\nFROM $B AS x\nRUN echo a \\\n  b # c\n"
        'ENV A=1 B="2 3"\nLABEL k=v\nCOPY --chown=1:1 a b\nCMD ["x", "y"]\n'
        "RUN <<EOF\nhi\nEOF\nHEALTHCHECK --interval=5s CMD true\nARG Q R=1\n"
    )
    theirs = godf.parse_string(text)
    ours = parse(text).nodes
    assert len(theirs) == len(ours)
    for go, me in zip(theirs, ours, strict=True):
        args = (
            [a for i, a in enumerate(me.args) if i % 3 != 2]
            if me.name in ("env", "label")
            else me.args
        )
        assert (go.cmd.lower(), list(go.flags), list(go.value), go.json) == (
            me.name,
            me.flags,
            args,
            me.json,
        )
        assert (go.start_line, go.end_line) == (me.start_line, me.end_line)
