"""The config {} template engine: references, index, functions, literals, operators, errors."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rawexec.errors import InvalidConfigError
from rawexec.taskenv import EvalContext, evaluate_config, evaluate_template
from rawexec.taskenv.hclexpr import nest_dotted

ENV = {"NOMAD_ALLOC_ID": "0123456789abcdef", "NOMAD_TASK_DIR": "/a/t/local", "a.b": "x", "a.b.c": "lost",
       "weird..k": "w", "N": "5", "PATH": "/bin"}
ATTRS = {"attr.kernel.name": "linux", "attr.cpu.numcores": "4", "node.unique.name": "n1",
         "node.unique.id": "nid", "node.datacenter": "dc1", "meta.rack": "r1"}


@pytest.fixture
def ctx() -> EvalContext:
    return EvalContext.for_task(ENV, ATTRS)


@pytest.mark.parametrize(("tmpl", "want"), [
    ("plain text", "plain text"),
    ("${NOMAD_ALLOC_ID}", "0123456789abcdef"),
    ("${NOMAD_TASK_DIR}/bin/app", "/a/t/local/bin/app"),
    ("${a.b}", "x"),
    ('${env["weird..k"]}', "w"),
    ('${env["a.b"]}', "x"),
    ("${attr.kernel.name}/${node.attr.kernel.name}", "linux/linux"),
    ("${node.unique.name}:${node.unique.id}:${node.datacenter}:${meta.rack}:${node.meta.rack}", "n1:nid:dc1:r1:r1"),
    ("$${NOMAD_ALLOC_ID}", "${NOMAD_ALLOC_ID}"),
    ("100%%{x}", "100%{x}"),
    ('${upper("x${a.b}y")}', "XXY"),
    ("${lower(\"AbC\")}", "abc"),
    ("${concat([1, 2], [\"3\"])}", [1, 2, "3"]),
    ("${N + 1}", 6),
    ("n=${N * 2}", "n=10"),
    ("${1.5 + 1}", 2.5),
    ("${7 / 2}", 3.5),
    ("${7 % 4}", 3),
    ("${-abs(-3)}", -3),
    ("${int(7.9)}", 7),
    ("${int(\"-7\")}", -7),
    ("${strlen(\"héllo\")}", 5),
    ("${substr(\"hello world\", 6, -1)}", "world"),
    ("${substr(\"hello\", -3, 2)}", "ll"),
    ("${reverse(\"abc\")}", "cba"),
    ("${reverse([1, 2, 3])}", [3, 2, 1]),
    ("${length([1, 2])}:${length(\"abc\")}:${length({a = 1})}", "2:3:1"),
    ("${max(1, 5, 3)}/${min(4, 2)}", "5/2"),
    ("${max([1, 9, 3]...)}", 9),
    ("${coalesce(\"\", \"b\", \"c\")}", "b"),
    ('${hasindex(env, "PATH")}/${hasindex([1], 1)}', "true/false"),
    ("${jsonencode({a = 1, \"b\" = [true, null]})}", '{"a":1,"b":[true,null]}'),
    ("${jsonencode({z = \"<&>\", a = 1})}", '{"a":1,"z":"\\u003c\\u0026\\u003e"}'),  # cty: keys sorted, Go's escapes
    ('${jsondecode("{\\"k\\": [1, 2]}").k[1]}', 2),
    ("${[10, 20, 30][1]}", 20),
    ("${[10, 20, 30].2}", 30),
    ("${{x = {y = \"deep\"}}.x.y}", "deep"),
    ("${N == \"5\" ? \"yes\" : \"no\"}", "yes"),
    ("${1 < 2 && !false || false}", True),
    ("${null}", None),
    ("${true}", True),
    ("${ NOMAD_ALLOC_ID }", "0123456789abcdef"),
    ("a ${~ \"b\" ~} c", "abc"),
    ("${\"tab\\there\"}", "tab\there"),
    ("${\"\\u00e9\"}", "é"),
    ("back\\slash ${N}", "back\\slash 5"),
])
def test_evaluates(ctx: EvalContext, tmpl: str, want: Any) -> None:
    got = evaluate_template(tmpl, ctx)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize(("tmpl", "msg"), [
    ("${nope}", 'Unknown variable; There is no variable named "nope".'),
    ("${a.c}", 'Unsupported attribute; This object does not have an attribute named "c".'),
    ("${a.b.c}", "Unsupported attribute; Can't access attributes on a value of type string."),
    ('${env["zz"]}', "Invalid index; The given key does not identify an element in this collection value."),
    ("${[1][5]}", "Invalid index"),
    ("${foo(1)}", 'Call to unknown function; There is no function named "foo".'),
    ("${upper(1, 2)}", 'Too many function arguments; Function "upper" expects 1 argument(s), got 2.'),
    ("${substr(\"x\")}", "Not enough function arguments"),
    ("${[1]}x", "Cannot include the given value in a string template: string required, got tuple."),
    ("x${null}", "The expression result is null."),
    ("${", "Invalid expression"),
    ("${N", 'Expected "}"'),
    ("${\"unterminated}", "Unterminated template string"),
    ("%{if true}x%{endif}", "Unsupported template directive"),
    ("${1/0}", "can't divide by zero"),
    ("${\"a\" + 1}", "a number is required"),
    ("${jsondecode(\"{bad\")}", 'Call to function "jsondecode" failed'),
    ("${coalesce(null, \"\")}", "no non-null, non-empty-string arguments"),
    ("${[for x in y: x]}", "for expressions are not supported"),
    ("${concat(1)}", "list or tuple required"),
    ("${max()}", "must pass at least one number"),
    ("${\"\\q\"}", "Invalid escape sequence"),
    ("${N ? 1 : 2}", "a bool is required"),
])
def test_errors_are_failed_to_parse_config(ctx: EvalContext, tmpl: str, msg: str) -> None:
    with pytest.raises(InvalidConfigError) as e:
        evaluate_template(tmpl, ctx, where="args[1]")
    assert str(e.value).startswith("failed to parse config: args[1]: ")
    assert msg in str(e.value)


def test_evaluate_config_walks_maps_and_lists(ctx: EvalContext) -> None:
    cfg = {"command": "${NOMAD_TASK_DIR}/app", "args": ["--id", "${NOMAD_ALLOC_ID}", 3, True],
           "nested": [{"k_${N}": "${concat([1], [2])}"}], "n": 1.5}
    assert evaluate_config(cfg, ctx) == {
        "command": "/a/t/local/app", "args": ["--id", "0123456789abcdef", 3, True],
        "nested": [{"k_5": [1, 2]}], "n": 1.5}
    with pytest.raises(InvalidConfigError, match=r"failed to parse config: args\[2\]: Unknown variable"):
        evaluate_config({"args": ["a", "b", "${missing}"]}, ctx)


def test_nest_dotted_conflicts() -> None:
    assert nest_dotted({"a.b": 1, "a.b.c": 2, "x..y": 3, ".z": 4, "q": 5}) == {"a": {"b": 1}, "q": 5}


@given(st.text(alphabet=st.characters(blacklist_characters="$%"), max_size=40))
def test_text_without_markers_is_unchanged(text: str) -> None:
    assert evaluate_template(text, EvalContext()) == text


@given(st.text(alphabet='${}%"[]().,+-*/!?:=<>~ aNb_019\\', max_size=30).map(lambda s: "${" + s))
def test_never_crashes_with_a_foreign_exception(text: str) -> None:
    try:
        evaluate_template(text, EvalContext.for_task(ENV, ATTRS))
    except InvalidConfigError:
        pass


def test_deep_nesting_is_a_clear_error(ctx: EvalContext) -> None:
    with pytest.raises(InvalidConfigError, match="failed to parse config: Invalid expression; the expression is "
                                                 "nested too deeply"):
        evaluate_template("${" + "(" * 5000 + "1" + ")" * 5000 + "}", ctx)
    assert evaluate_template("${" + "(" * 50 + "1" + ")" * 50 + "}", ctx) == 1


def test_conditional_evaluates_only_the_chosen_branch(ctx: EvalContext) -> None:
    tmpl = '${hasindex(env, "UNSET") ? env["UNSET"] : "fallback"}'
    assert evaluate_template(tmpl, ctx) == "fallback"
    assert evaluate_template('${true ? "yes" : nope.x[1] + foo("a", "${b}")}', ctx) == "yes"
    assert evaluate_template('${false ? upper(missing) : lower("OK")}', ctx) == "ok"
    assert evaluate_template('${true ? (false ? a : "in") : b}', ctx) == "in"
    with pytest.raises(InvalidConfigError, match="Unknown variable"):
        evaluate_template('${false ? "x" : missing}', ctx)
    with pytest.raises(InvalidConfigError, match=r'Expected "\)"'):  # the skipped branch is still parsed
        evaluate_template('${true ? "x" : (a b}', ctx)
