"""HCL2 expressions: templates, heredocs, functions, operators, runtime interpolation kept verbatim."""

from __future__ import annotations

from typing import Any

import pytest

from rawexec.jobspec.model import thaw
from tests.jobspec.conftest import errors_of, parse, task_job


def value(expr: str, prelude: str = "") -> Any:
    """Evaluate ``expr`` as a raw_exec config value."""
    text = prelude + ('job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n config {\n'
                      f" v = {expr}\n }}\n }}\n }}\n}}\n")
    return thaw(parse(text).groups[0].tasks[0].config)["v"]


@pytest.mark.parametrize(("expr", "expected"), [
    ('"plain"', "plain"),
    ('"a\\tb\\n\\"q\\" \\\\ \\u00e9"', 'a\tb\n"q" \\ é'),
    ('"x-${1 + 2}-y"', "x-3-y"),
    ('"${true}"', True),
    ("1 + 2 * 3 - 4 / 2", 5),
    ("7 % 3", 1),
    ("-(2 + 3)", -5),
    ("1.5 * 2", 3.0),
    ('!false && (1 < 2) || false', True),
    ('"a" == "a" ? "yes" : "no"', "yes"),
    ("[1, 2, 3][1]", 2),
    ('{ a = { b = "c" } }.a.b', "c"),
    ('{ "k" = 1 }["k"]', 1),
    ("[for x in [1, 2, 3] : x * 2 if x > 1]", [4, 6]),
    ('{for k, v in { a = 1, b = 2 } : upper(k) => v}', {"A": 1, "B": 2}),
    ('[{ n = 1 }, { n = 2 }][*].n', [1, 2]),
    ('upper("abc")', "ABC"),
    ('lower("ABC")', "abc"),
    ('format("%s=%d (%q) %.2f %5s|%-3s|", "k", 42, "q", 3.14159, "r", "l")', 'k=42 ("q") 3.14 ' + "    r|l  |"),
    ('join("-", ["a", "b"], ["c"])', "a-b-c"),
    ('split(",", "a,b,,c")', ["a", "b", "", "c"]),
    ('concat([1], [], [2, 3])', [1, 2, 3]),
    ('lookup({ a = "x" }, "a", "d")', "x"),
    ('lookup({ a = "x" }, "b", "d")', "d"),
    ('merge({ a = 1, b = 2 }, { b = 3 })', {"a": 1, "b": 3}),
    ('coalesce("", null, "z")', "z"),
    ('length("héllo")', 5),
    ('length([1, 2])', 2),
    ('jsonencode({ a = [1, "x", true, null] })', '{"a":[1,"x",true,null]}'),
    ('jsondecode("[1, {\\"a\\": 2}]")', [1, {"a": 2}]),
    ('replace("hello world", "o", "0")', "hell0 w0rld"),
    ('replace("a1b22", "/[0-9]+/", "#")', "a#b#"),
    ('trimspace("  \\n x \\t")', "x"),
    ('tostring(12)', "12"),
    ('tonumber("3.5")', 3.5),
    ('tobool("false")', False),
    ('join(",", [for s in split(",", "a,b") : "${s}!"])', "a!,b!"),
    ('"%{ for i, x in ["a", "b"] }${i}${x} %{ endfor }"', "0a 1b "),
    ('"%{ if 1 > 2 }big%{ else }small%{ endif }"', "small"),
    ('"a %{~ if true ~} b %{~ endif ~}"', "ab"),
    ('"$${not_interpolated} %%{not_directive}"', "${not_interpolated} %{not_directive}"),
    ("max(1, 5, 3)", 5),
    ("min(4, 2)", 2),
    ('contains(["a"], "a")', True),
    ('keys({ b = 1, a = 2 })', ["a", "b"]),
    ('substr("hello", 1, 3)', "ell"),
    ('element(["a", "b"], 3)', "b"),
    ('flatten([[1], [2, [3]]])', [1, 2, 3]),
    ("range(3)", [0, 1, 2]),
    ("base64decode(base64encode(\"hi\"))", "hi"),
    ("abs(-3)", 3),
])
def test_expressions(expr: str, expected: Any) -> None:
    assert value(expr) == expected


@pytest.mark.parametrize(("expr", "kept"), [
    ('"${NOMAD_ALLOC_ID}"', "${NOMAD_ALLOC_ID}"),
    ('"${NOMAD_TASK_DIR}/bin"', "${NOMAD_TASK_DIR}/bin"),
    ('"${attr.kernel.name}"', "${attr.kernel.name}"),
    ('"${meta.rack}"', "${meta.rack}"),
    ('"${node.unique.name}"', "${node.unique.name}"),
    ('"${env["HOME"]}"', '${env["HOME"]}'),
    ('"${env["my.weird.var"]}-x"', '${env["my.weird.var"]}-x'),
    ("NOMAD_ALLOC_INDEX", "${NOMAD_ALLOC_INDEX}"),
    ("attr.cpu.numcores", "${attr.cpu.numcores}"),
    ('"${upper(attr.kernel.name)}"', "${upper(attr.kernel.name)}"),
    ('"${HOME}"', "${HOME}"),
    ('["${NOMAD_PORT_http}", "x"]', ["${NOMAD_PORT_http}", "x"]),
    ('"${ NOMAD_JOB_NAME }"', "${NOMAD_JOB_NAME}"),
])
def test_runtime_interpolation_stays_verbatim(expr: str, kept: Any) -> None:
    assert value(expr) == kept


def test_runtime_values_pass_through_functions_that_only_move_them() -> None:
    pre = 'variable "x" {\n default = ["a"]\n}\n'
    assert value('concat(var.x, ["${NOMAD_TASK_DIR}"])', pre) == ["a", "${NOMAD_TASK_DIR}"]
    assert value('merge({ a = var.x[0] }, { b = attr.os.name })', pre) == {"a": "a", "b": "${attr.os.name}"}


def test_mixing_job_variables_and_runtime_values_in_one_expression_is_an_error() -> None:
    pre = 'variable "x" {\n default = "a"\n}\n'
    errs = errors_of('variable "x" {\n default = "a"\n}\n' + task_job('user = "${var.x == attr.y ? 1 : 2}"'))
    assert any("cannot mix job-file variables" in e for e in errs)
    # separate interpolations are fine
    assert value('"${var.x}-${attr.y}"', pre) == "a-${attr.y}"


def test_heredocs() -> None:
    pre = 'variable "who" {\n default = "world"\n}\n'
    text = pre + 'job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n config {\n' \
        ' a = <<EOT\nhello ${var.who}\n  "quoted" \\n stays\nEOT\n' \
        ' b = <<-EOT\n    indented ${upper(var.who)}\n      more\n    EOT\n' \
        ' c = <<EOT\nno interpolation\nEOT\n' \
        ' d = <<EOT\nrt ${NOMAD_ALLOC_ID} %{ if true }yes%{ endif }\nEOT\n }\n }\n }\n}\n'
    cfg = thaw(parse(text).groups[0].tasks[0].config)
    assert cfg["a"] == 'hello world\n  "quoted" \\n stays\n'
    assert cfg["b"] == "indented WORLD\n  more\n"
    assert cfg["c"] == "no interpolation\n"
    assert cfg["d"] == "rt ${NOMAD_ALLOC_ID} yes\n"


@pytest.mark.parametrize(("expr", "text"), [
    ("nosuchfn(1)", 'Call to unknown function: there is no function named "nosuchfn"'),
    ("uper(\"a\")", 'did you mean "upper"?'),
    ("1 / 0", "Division by zero"),
    ('"a" + 1', "Invalid operand"),
    ("[1][5]", "out of range"),
    ('{ a = 1 }.b', 'does not have an attribute named "b"'),
    ('"${[1, 2]}x"', "cannot include a tuple in a string template"),
    ('lookup({}, "k")', 'the given key "k" does not exist'),
    ('jsondecode("{bad")', "invalid JSON"),
    ('format("%d", "x")', "cannot convert"),
    ('"\\q"', "Invalid escape sequence"),
    ("true ? 1", "Syntax error"),
    ('tonumber("x1")', 'cannot convert "x1" to number'),
    ("range(100000)", "more than 1024"),
])
def test_expression_errors(expr: str, text: str) -> None:
    errs = errors_of('job "j" {\n group "g" {\n task "t" {\n driver = "docker"\n config {\n'
                     f" v = {expr}\n }}\n }}\n }}\n}}\n", filename="e.hcl")
    assert len(errs) == 1 and text in errs[0], errs
    assert errs[0].startswith("e.hcl:6:" if "Syntax" not in text else "e.hcl:")
