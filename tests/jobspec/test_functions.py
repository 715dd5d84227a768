"""The functions of Nomad's jobspec2 table: one normal and one error case (at least) per function."""

from __future__ import annotations

import hashlib
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from rawexec.jobspec.diagnostics import SEP
from rawexec.jobspec.hcl.library import ALL_NAMES, NOT_SUPPORTED
from rawexec.jobspec.model import thaw
from tests.jobspec.conftest import errors_of, parse, task_job

DOCS = Path(__file__).parents[2] / "docs" / "functions.md"


def _job(expr: str) -> str:
    return ('job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n config {\n'
            f" v = {expr}\n }}\n }}\n }}\n}}\n")


def value(expr: str, prelude: str = "", **kw: object) -> Any:
    """Evaluate ``expr`` as a task config value."""
    return thaw(parse(prelude + _job(expr), **kw).groups[0].tasks[0].config)["v"]


def error(expr: str, prelude: str = "", **kw: object) -> str:
    """The errors evaluating ``expr`` gives, joined."""
    return "\n".join(errors_of(prelude + _job(expr), **kw))


OK: list[tuple[str, Any]] = [
    # numbers
    ("ceil(1.2)", 2), ("ceil(-1.5)", -1), ("floor(1.8)", 1), ("floor(-1.2)", -2),
    ("log(16, 2)", 4), ("log(1000, 10)", 3), ("pow(3, 2)", 9), ("pow(4, 0.5)", 2), ("pow(2, -1)", 0.5),
    ("signum(-3)", -1), ("signum(0)", 0), ("signum(5.5)", 1),
    ('parseint("100", 10)', 100), ('parseint("FF", 16)', 255), ('parseint("-10", 16)', -16),
    ('parseint("1011111011101111", 2)', 48879), ('parseint("aA", 62)', 656), ('parseint("zz", 36)', 1295),
    # lists and sets
    ('chunklist(["a", "b", "c"], 2)', [["a", "b"], ["c"]]), ("chunklist([1, 2], 0)", [[1, 2]]),
    ("chunklist([], 0)", []),
    ('coalescelist(["a", "b"], ["c"])', ["a", "b"]), ('coalescelist([], ["c"])', ["c"]),
    ('index(["a", "b", "c"], "b")', 1),
    ('setintersection(["a", "b"], ["b", "c"], ["b", "d"])', ["b"]),
    ('setunion(["b", "a"], ["c", "a"])', ["a", "b", "c"]), ("setunion([3, 1], [2])", [1, 2, 3]),
    ('setproduct(["a", "b"], [1, 2])', [["a", 1], ["a", 2], ["b", 1], ["b", 2]]),
    ('setproduct(["a"], [])', []),
    ('slice(["a", "b", "c", "d"], 1, 3)', ["b", "c"]), ("slice([1], 1, 1)", []),
    ('sort(["e", "d", "a", "x"])', ["a", "d", "e", "x"]), ("sort([3, 10])", ["10", "3"]),
    ('zipmap(["a", "b"], [1, { c = 2 }])', {"a": 1, "b": {"c": 2}}),
    ('csvdecode("a,b\\n1,2\\n3,\\"x,y\\"\\n")', [{"a": "1", "b": "2"}, {"a": "3", "b": "x,y"}]),
    # strings
    ('formatlist("Hello, %s!", ["Valentina", "Ander"])', ["Hello, Valentina!", "Hello, Ander!"]),
    ('formatlist("%s, %s!", "Hi", ["a", "b"])', ["Hi, a!", "Hi, b!"]), ('formatlist("%d", 1)', ["1"]),
    ('indent(2, "a\\nb\\n")', "a\n  b\n  "),
    ('strrev("hello")', "olleh"), ('reverse("abc")', "cba"), ('strrev("he\\u0301y")', "ye\u0301h"),
    ('regex_replace("hello world", "o(\\\\w)", "0$1")', "hello w0rld"),
    ('regex_replace("2024-01", "(\\\\d+)-(\\\\d+)", "$2/$1 $$")', "01/2024 $"),
    ('regex_replace("ab", "(?P<x>b)", "[$x][$nope]")', "a[b][]"),
    ('urlencode("Hello World!")', "Hello+World%21"), ('urlencode("a/b?c=d&e~f_g.h-i")', "a%2Fb%3Fc%3Dd%26e~f_g.h-i"),
    ('title("hello wORLD, it\'s foo_bar 1st")', "Hello WORLD, It'S Foo_bar 1st"),
    # hashes and uuids
    ('md5("hello world")', "5eb63bbbe01eeed093cb22bb8f5acdc3"),
    ('sha1("hello world")', "2aae6c35c94fcfb415dbe95f408b9ce91ee846ed"),
    ('sha256("hello world")', "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"),
    ('sha512("hello world")', hashlib.sha512(b"hello world").hexdigest()),
    ('md5("é")', hashlib.md5("é".encode()).hexdigest()),
    ('uuidv5("dns", "www.terraform.io")', "a5008fae-b28c-5ba5-96cd-82b4c53552d6"),
    ('uuidv5("url", "https://www.terraform.io/")', "9db6f67c-dd95-5ea0-aa5b-e70e5c5f7cf5"),
    ('uuidv5("6ba7b810-9dad-11d1-80b4-00c04fd430c8", "x")', str(uuid.uuid5(uuid.NAMESPACE_DNS, "x"))),
    # networks
    ('cidrhost("10.12.112.0/20", 16)', "10.12.112.16"), ('cidrhost("10.12.112.0/20", 268)', "10.12.113.12"),
    ('cidrhost("10.0.0.0/24", -1)', "10.0.0.255"),
    ('cidrhost("fd00:fd12:3456:7890:00a2::/72", 34)', "fd00:fd12:3456:7890::22"),
    ('cidrnetmask("172.16.0.0/12")', "255.240.0.0"),
    ('cidrsubnet("172.16.0.0/12", 4, 2)', "172.18.0.0/16"), ('cidrsubnet("10.1.2.0/24", 4, 15)', "10.1.2.240/28"),
    ('cidrsubnet("fd00:fd12:3456:7890::/56", 16, 162)', "fd00:fd12:3456:7800:a200::/72"),
    ('cidrsubnets("10.1.0.0/16", 4, 4, 8, 4)', ["10.1.0.0/20", "10.1.16.0/20", "10.1.32.0/24", "10.1.48.0/20"]),
    # dates
    ('formatdate("DD MMM YYYY hh:mm ZZZ", "2018-01-02T23:12:01Z")', "02 Jan 2018 23:12 UTC"),
    ('formatdate("EEE, DD MMM YYYY hh:mm:ss ZZZ", "2018-01-02T23:12:01-08:00")', "Tue, 02 Jan 2018 23:12:01 -0800"),
    ('formatdate("EEEE MMMM D, h:m:s, HH:mmaa, H AA, YY M ZZZZZ Z", "2018-01-02T03:04:05+05:30")',
     "Tuesday January 2, 3:4:5, 03:04am, 3 AM, 18 1 +05:30 +05:30"),
    ('formatdate("YYYY-MM-DD\'T\'hh\'\'", "2018-01-02T23:12:01.5Z")', "2018-01-02T23'"),
    ('timeadd("2017-11-22T00:00:00Z", "10m")', "2017-11-22T00:10:00Z"),
    ('timeadd("2017-11-22T00:00:00-08:00", "-1h30m")', "2017-11-21T22:30:00-08:00"),
    # paths (no file system access)
    ('basename("foo/bar/baz.txt")', "baz.txt"), ('basename("/")', "/"), ('basename("")', "."),
    ('basename("a/b/")', "b"),
    ('dirname("foo/bar/baz.txt")', "foo/bar"), ('dirname("baz")', "."), ('dirname("/a")', "/"),
    ('dirname("a/b/")', "a/b"),
    # yaml (go-cty-yaml's rules: quoted is verbatim, plain is guessed, YAML 1.1 booleans; the
    # yamlencode cases are Terraform's documented examples)
    ('yamlencode({"a":"b", "c":"d"})', '"a": "b"\n"c": "d"\n'),
    ('yamlencode({"foo":[1, 2, 3], "bar": "baz"})', '"bar": "baz"\n"foo":\n- 1\n- 2\n- 3\n'),
    ('yamlencode({"foo":[1, {"a":"b","c":"d"}, 3], "bar": "baz"})',
     '"bar": "baz"\n"foo":\n- 1\n- "a": "b"\n  "c": "d"\n- 3\n'),
    ("yamlencode(true)", "true\n...\n"), ("yamlencode(0)", "0\n...\n"), ("yamlencode(null)", "null\n...\n"),
    ('yamlencode("hello")', '"hello"\n'), ('yamlencode("")', '""\n'), ("yamlencode({})", "{}\n"),
    ("yamlencode([])", "[]\n"), ("yamlencode(256 * 1.5)", "384\n...\n"),
    ('yamlencode({ a = "x\\ny", "yes" = "yes" })', '"a": "x\\ny"\n"yes": "yes"\n'),
    ('yamldecode("a: 1\\nb: true")', {"a": 1, "b": True}),
    ('yamldecode("[yes, No, off, ~, null, \\"\\", x]")', [True, False, False, None, None, "", "x"]),
    ('yamldecode("a: \'true\'\\nb: \\"1\\"\\nc: !!str 2\\nd: |\\n  3\\n")',
     {"a": "true", "b": "1", "c": "2", "d": "3\n"}),
    ('yamldecode("[12, -12, .5, 1.5, 1e3, 0x1F, 0o17, -0b101, 012, 1_000, +Inf]")',
     [12, -12, 0.5, 1.5, 1000, 31, 15, -5, 12, "1_000", math.inf]),
    ('yamldecode("[2006-1-2, 2001-12-14t21:59:43.10-05:00, 2001-12-14 21:59:43]")',
     ["2006-01-02T00:00:00Z", "2001-12-14T21:59:43-05:00", "2001-12-14T21:59:43Z"]),
    ('yamldecode("!!bool yes")', True), ('yamldecode("!!int 0x10")', 16),
    ('yamldecode("!!binary aGVsbG8=")', "aGVsbG8="),
    ('yamldecode("{1: a, true: b, 1.50: c, <<: d}")', {"1": "a", "true": "b", "1.5": "c", "<<": "d"}),
    ('yamldecode("foo: &bar\\n  - x\\nbar: *bar")', {"foo": ["x"], "bar": ["x"]}),
    ('yamldecode("")', None), ('yamldecode("# only a comment")', None),
    # try, can, convert
    ('try(local.nope, "fallback")', "fallback"), ('try({ a = 1 }.b, [1][5], "z")', "z"),
    ('try("first", "second")', "first"), ('can(1 + "a")', False), ('can(upper("a"))', True),
    ('convert(["1", 2], list(number))', [1, 2]), ('convert(1, string)', "1"),
    ('convert({ a = "true" }, map(bool))', {"a": True}),
]


@pytest.mark.parametrize(("expr", "expected"), OK)
def test_function(expr: str, expected: Any) -> None:
    assert value(expr) == expected


ERRORS: list[tuple[str, str]] = [
    ('ceil("x")', 'ceil(): invalid value for "num" parameter'), ("floor()", "floor() takes 1 argument"),
    ("log(0, 2)", "log(): the logarithm of 0 to base 2 is not a finite number"),
    ("pow(-1, 0.5)", "pow(): -1 to the power 0.5 is not a finite number"),
    ("signum([1])", 'signum(): invalid value for "num" parameter'),
    ('parseint("12", 2)', 'parseint(): cannot parse "12" as a base 2 integer'),
    ('parseint("1", 1)', "base must be a whole number between 2 and 62 inclusive"),
    ("parseint(12, 10)", 'parseint(): invalid value for "number" parameter: a string is required'),
    ("chunklist([1], 1.5)", 'chunklist(): invalid value for "size" parameter: a whole number is required'),
    ("chunklist([1], -1)", 'chunklist(): invalid value for "size" parameter: the size argument must be positive'),
    ('chunklist("a", 1)', 'chunklist(): invalid value for "list" parameter: list required, got string'),
    ("coalescelist([], [])", "coalescelist(): no non-null arguments"),
    ('coalescelist("a")', 'coalescelist arguments must be lists or tuples; argument 1 is a string'),
    ('index(["a"], "z")', "index(): item not found"), ('index([], "z")', "cannot search an empty list"),
    ('setintersection("x")', 'setintersection(): invalid value for "first" parameter'),
    ('setunion(["a"], 1)', 'setunion(): invalid value for "other_sets" parameter'),
    ('setproduct(["a"])', "setproduct(): at least two arguments are required"),
    ("slice([1], 0, 2)", 'slice(): invalid value for "end_index" parameter'),
    ("slice([1, 2], 2, 1)", "must be less than or equal to end_index"),
    ("slice([1], -1, 1)", "must be greater than or equal to 0"),
    ('sort(["a", null])', "given list element 1 is null"),
    ('zipmap(["a"], [1, 2])', "zipmap(): number of keys (1) does not match number of values (2)"),
    ('csvdecode("a,b\\n1\\n")', "csvdecode(): record on line 2: wrong number of fields"),
    ('csvdecode("")', "csvdecode(): missing header line"),
    ('formatlist("%s %s", ["a"], ["b", "c"])', "formatlist(): argument 3 has length 2, which is inconsistent"),
    ('indent(-1, "a")', 'indent(): invalid value for "spaces" parameter'),
    ("strrev([1])", 'strrev(): invalid value for "str" parameter: string required, got tuple'),
    ("reverse([1, 2])", 'reverse(): invalid value for "str" parameter: string required'),
    ('regex_replace("a", "(", "")', 'regex_replace(): invalid value for "substr" parameter: invalid regular'),
    ("urlencode({})", 'urlencode(): invalid value for "str" parameter'),
    ("md5(null)", 'md5(): invalid value for "str" parameter: argument must not be null'),
    ("sha1([])", "sha1(): invalid value"), ("sha256()", "sha256() takes 1 argument"),
    ("sha512(1, 2)", "sha512() takes 1 argument"),
    ("uuidv4(1)", "uuidv4() takes 0 argument(s), got 1"),
    ('uuidv5("nope", "x")', 'uuidv5(): invalid value for "namespace" parameter: "nope" is not supported'),
    ('cidrhost("10.0.0.0/30", 4)', "prefix of /30 does not accommodate a host numbered 4"),
    ('cidrhost("nonsense", 1)', 'cidrhost(): invalid value for "prefix" parameter: invalid CIDR expression'),
    ('cidrnetmask("fd00::/8")', "only IPv4 networks are supported"),
    ('cidrsubnet("10.0.0.0/30", 4, 0)', "insufficient address space to extend prefix of 30 by 4"),
    ('cidrsubnet("10.0.0.0/16", 2, 4)', "prefix extension of 2 does not accommodate a subnet numbered 4"),
    ('cidrsubnets("10.0.0.0/30", 1, 1, 1)', "argument 4: not enough remaining address space"),
    ('formatdate("YYYY", "2018-01-02")', 'formatdate(): invalid value for "timestamp" parameter: not a valid RFC3339'),
    ('formatdate("YYYY Q", "2018-01-02T00:00:00Z")', 'invalid date format verb "Q"'),
    ('timeadd("2017-11-22T00:00:00Z", "1y")', 'timeadd(): invalid value for "duration" parameter'),
    ('timeadd("yesterday", "1h")', "not a valid RFC3339 timestamp"),
    ('basename(["a"])', 'basename(): invalid value for "path" parameter'), ("dirname()", "dirname() takes 1"),
    ('pathexpand("~bob/x")', "cannot expand user-specific home dir"),
    ("abspath(null)", 'abspath(): invalid value for "path" parameter'),
    ("try()", "try(): at least one argument is required"),
    ('try(1 + "a", [1][5])', "try(): no expression succeeded:\n- Invalid operand"),
    ("can(1, 2)", "can() takes 1 argument"),
    ('convert("a", number)', 'convert(): invalid value for "value" parameter'),
    ("convert(1, nosuchtype)", "Invalid type specification"),
    ('yamldecode("a: 1\\n---\\nb: 2")', "yamldecode(): on line 2, column 1: only a single document is allowed"),
    ('yamldecode(".nan")', "yamldecode(): on line 1, column 1: floating point NaN is not supported"),
    ('yamldecode("a: &x [1, *x]")', "cannot refer to an anchor from inside its own definition"),
    ('yamldecode("x: *nope")', "yamldecode(): on line 1, column 4: found undefined alias"),
    ('yamldecode("!!bool bananas")', 'cannot parse "bananas" as !!bool'),
    ('yamldecode("!!binary \'>>>>\'")', 'cannot parse ">>>>" as tag:yaml.org,2002:binary: not valid base64'),
    ('yamldecode("!!nope foo")', 'unsupported tag "tag:yaml.org,2002:nope"'),
    ('yamldecode("!!map [1]")', "can't interpret sequence as tag:yaml.org,2002:map"),
    ('yamldecode("? [1]\\n: 2")', "yamldecode(): on line 1, column 3: only strings are allowed as mapping keys"),
    ('yamldecode("~: 2")', "mapping key cannot be null"),
    ('yamldecode("{a: [1,")', "yamldecode(): on line 2, column 1: did not find expected node content"),
    ("yamldecode([])", 'yamldecode(): invalid value for "src" parameter'), ("yamlencode()", "yamlencode() takes 1"),
]


@pytest.mark.parametrize(("expr", "text"), ERRORS)
def test_function_error(expr: str, text: str) -> None:
    assert text in error(expr)


def test_uuidv4_is_random_and_version_4() -> None:
    a, b = value("uuidv4()"), value("uuidv4()")
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", a)
    assert a != b


def test_path_functions_use_home_and_working_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    assert value('pathexpand("~/.ssh/id")') == f"{tmp_path}/.ssh/id"
    assert value('pathexpand("/etc/x")') == "/etc/x"
    assert value('abspath("a/../b")') == os.path.join(str(tmp_path), "b")


def test_fileexists_and_fileset_are_relative_to_the_job_file(tmp_path: Path) -> None:
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "sub").mkdir()
    for p in ("conf/a.txt", "conf/b.txt", "conf/c.json", "conf/sub/d.txt"):
        (tmp_path / p).write_text("x")
    kw = {"base_dir": str(tmp_path)}
    assert value('fileexists("conf/a.txt")', **kw) is True
    assert value('fileexists("conf/nope.txt")', **kw) is False
    assert value(f'fileexists("{tmp_path}/conf/a.txt")', **kw) is True
    assert 'fileexists(): "conf" is a directory' in error('fileexists("conf")', **kw)
    assert value('fileset("conf", "*.txt")', **kw) == ["a.txt", "b.txt"]
    assert value('fileset("conf", "**/*.txt")', **kw) == ["a.txt", "b.txt", "sub/d.txt"]
    assert value('fileset("conf", "{a,c}.*")', **kw) == ["a.txt", "c.json"]
    assert value('fileset("conf", "?.json")', **kw) == ["c.json"]
    assert value('fileset("missing", "*")', **kw) == []
    assert 'fileset(): invalid value for "pattern" parameter' in error('fileset("conf", "[a")', **kw)


def test_try_and_can_keep_runtime_values_for_the_client() -> None:
    assert value('try(attr.kernel.name, "x")') == '${try(attr.kernel.name, "x")}'
    assert value("can(NOMAD_ALLOC_ID)") == "${can(NOMAD_ALLOC_ID)}"


def test_try_does_not_hide_an_error_reported_elsewhere() -> None:
    errs = errors_of('variable "req" {}\n' + _job('try(var.req, "fallback")'))
    assert len(errs) == 1 and "Missing required variable" in errs[0]


@pytest.mark.parametrize("name", sorted(NOT_SUPPORTED))
def test_nomad_functions_without_a_library_say_so(name: str) -> None:
    text = error(f'{name}("a")')
    assert f'Call to unsupported function: "{name}" is not supported' in text


def test_unknown_function_hint_names_the_docs_file() -> None:
    text = error("zzz(1)")
    assert "see the list of supported functions in docs/functions.md" in text


def test_docs_list_every_supported_function_and_no_other() -> None:
    rows = [line.split(" | ")[0] for line in DOCS.read_text().splitlines() if line.startswith("| `")]
    documented = {name for row in rows for name in re.findall(r"`(\w+)\(", row)}
    assert documented == set(ALL_NAMES)
    for name in NOT_SUPPORTED:
        assert f"`{name}`" in DOCS.read_text()


# -- numbers render as cty renders them ------------------------------------------------------------
@pytest.mark.parametrize(("expr", "expected"), [
    ('"${var.mem * 1.5}"', 384),
    ('"x${var.mem * 1.5}"', "x384"),
    ("var.mem * 1.5", 384),
    ('"${0.1 + 0.2}"', 0.3),
    ('"x${0.1 + 0.2}" == "x0.3"', True),
    ("0.1 + 0.2 == 0.3", True),
    ('"x${0.1 + 0.2}"', "x0.3"),
    ('"x${1e-7}"', "x0.0000001"),
    ('"x${1e21}"', "x1000000000000000000000"),
    ('"x${7 / 2}"', "x3.5"),
    ('"x${2.50}"', "x2.5"),
    ("[2.0, 1.5]", [2, 1.5]),
    ('tostring(10 / 4)', "2.5"),
    ('format("%v", 3.0)', "3"),
])
def test_number_rendering(expr: str, expected: Any) -> None:
    got = value(expr, 'variable "mem" {\n default = 256\n}\n')
    assert got == expected
    assert type(got) is type(expected)


def test_jsonencode_sorts_keys_and_escapes_html_characters() -> None:
    assert value("jsonencode({ b = 1, a = 2 })") == '{"a":2,"b":1}'
    assert value('jsonencode({ z = { y = 1.0, x = [0.5] }, a = "<&>" })') == \
        '{"a":"\\u003c\\u0026\\u003e","z":{"x":[0.5],"y":1}}'


# -- errors caused by an earlier error are not reported ---------------------------------------------
def test_missing_required_variable_is_reported_once() -> None:
    text = 'variable "req" {}\n' + task_job('', job_body='meta {\n x = "${var.req}"\n y = upper(var.req)\n}')
    errs = errors_of(text)
    assert len(errs) == 1, errs
    assert 'Missing required variable: the variable "req"' in errs[0]


def test_failing_local_is_reported_once_and_not_as_a_wrong_args_type() -> None:
    text = ('locals {\n x = uuidv9()\n y = "${local.x}-1"\n}\n'
            + task_job('', group_body='meta {\n m = local.y\n}').replace(
                'command = "/bin/true"', 'command = "/bin/true"\n        args = ["${local.x}"]'))
    errs = errors_of(text)
    assert len(errs) == 1, errs
    assert 'there is no function named "uuidv9"' in errs[0] and f"locals{SEP}x" in errs[0]


def test_a_cycle_in_locals_is_reported_once() -> None:
    errs = errors_of('locals {\n a = local.b\n b = local.a\n}\n' + task_job(""))
    assert len(errs) == 1 and "Cycle in local values" in errs[0], errs


@pytest.mark.parametrize("expr", ["local.x", "uuidv9()"])
def test_a_failed_command_is_not_also_reported_missing(expr: str) -> None:
    prelude = 'locals {\n x = uuidv9()\n}\n' if "local." in expr else ""
    text = prelude + task_job("").replace('command = "/bin/true"', f"command = {expr}")
    errs = errors_of(text)
    assert len(errs) == 1, errs
    assert 'there is no function named "uuidv9"' in errs[0]


def test_yaml_round_trips_and_folds_long_strings_as_go_yaml() -> None:
    long = "a very long string with many words in it that goes on and on past the eighty column limit ok"
    text = value(f'yamlencode({{ k = "{long}", l = ["é\\t\\u0001", "x: y", "- z", "#"] }})')
    assert text == ('"k": "a very long string with many words in it that goes on and on past the eighty\n'
                    '  column limit ok"\n"l":\n- "é\\t\\x01"\n- "x: y"\n- "- z"\n- "#"\n')
    assert value(f'yamldecode(yamlencode({{ k = "{long}", n = [1, 2.5, true, null, {{}}] }}))') == \
        {"k": long, "n": [1, 2.5, True, None, {}]}


def test_yamldecode_shares_aliases_instead_of_expanding_them() -> None:
    # a "billion laughs" document: 9 levels of 9 aliases each would be 387 million strings expanded
    doc = "a: &a [x, x, x, x, x, x, x, x, x]\\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\\n" for i in range(8))
    out = value(f'yamldecode("{doc}").i[0][0][0][0][0][0][0][0]')
    assert out == ["x"] * 9


def test_yaml_functions_keep_runtime_values_for_the_client() -> None:
    assert value("yamlencode({ a = NOMAD_ALLOC_ID })") == "${yamlencode({ a = NOMAD_ALLOC_ID })}"
