"""The ``?filter=`` evaluator (go-bexpr's language) against JSON-shaped objects."""

from __future__ import annotations

import time
from typing import Any

import pytest

from rawexec.api.bexpr import (
    MAX_NESTING,
    REGEX_BUDGET_S,
    And,
    Filter,
    FilterEvalError,
    FilterSyntaxError,
    Match,
    Not,
    Or,
    parse,
)

JOB: dict[str, Any] = {
    "ID": "web-1",
    "Name": "web",
    "Status": "running",
    "Stop": False,
    "Priority": 50,
    "Ratio": 0.5,
    "Meta": {"team": "ops", "tier-1": "yes", "empty": ""},
    "Datacenters": ["dc1", "dc2"],
    "Ports": [8080, 9090],
    "Mixed": ["a", 1, True],
    "NoMeta": None,
    "Empty": [],
    "JobSummary": {"Summary": {"web": {"Failed": 0, "Running": 2}}},
    "TaskGroups": [{"Name": "g", "Count": 3}],
}


def ok(expr: str, obj: Any = JOB) -> bool:
    return Filter(expr).matches(obj)


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        # equality, all value spellings, coercion to the field's type
        ('ID == "web-1"', True),
        ("ID == `web-1`", True),
        ('ID != "web-1"', False),
        ("Name == web", True),
        ("Status==\"running\"", True),
        ("Priority == 50", True),
        ('Priority == "50"', True),
        ('Priority == "0x32"', True),  # a string is coerced as Go ParseInt(base 0) does
        ('Priority == "062"', True),  # Go: a leading 0 is octal
        ("Priority != 51", True),
        ("Ratio == 0.5", True),
        ("Stop == false", True),
        ("Stop == true", False),
        ('Stop == "F"', True),
        ("Stop != true", True),
        # paths: dotted, index, numeric, JSON pointer
        ("Meta.team == ops", True),
        ('Meta["tier-1"] == "yes"', True),
        ("Meta[`team`] == `ops`", True),
        ('Meta[ "team" ] == "ops"', True),
        ("JobSummary.Summary.web.Running == 2", True),
        ('JobSummary.Summary["web"].Failed == 0', True),
        ("Datacenters.1 == dc2", True),
        ("TaskGroups.0.Count == 3", True),
        ('"/Meta/team" == "ops"', True),
        ('"/JobSummary/Summary/web/Running" == 2', True),
        # in / contains on lists, maps and strings
        ('"dc1" in Datacenters', True),
        ('"dc3" in Datacenters', False),
        ('"dc3" not in Datacenters', True),
        ("dc1 in Datacenters", True),  # a bare word before in is a value
        ("dc1 not in Datacenters", False),
        ("Datacenters contains dc2", True),
        ('Datacenters not contains "dc2"', False),
        ("8080 in Ports", True),
        ('"9090" in Ports', True),
        ("7 in Ports", False),
        ('"a" in Mixed', True),
        ("1 in Mixed", True),
        ("true in Mixed", True),  # "true" is no int: that item is skipped, the bool matches
        ('"team" in Meta', True),
        ('"ops" in Meta', False),  # keys, not values
        ("Meta contains team", True),
        ('"eb-" in ID', True),
        ('ID contains "eb-"', True),
        ('ID not contains "x"', True),
        # emptiness
        ("Empty is empty", True),
        ("Datacenters is not empty", True),
        ("Meta.empty is empty", True),
        ("Meta is empty", False),
        ("NoMeta is empty", True),
        # regex (unanchored search)
        ('ID matches "^web-[0-9]+$"', True),
        ('ID matches "eb"', True),
        ('ID not matches "^db"', True),
        ("Meta.team matches `^o.s$`", True),
        # escapes in double-quoted strings
        ('ID == "w\\x65b-1"', True),
        ('ID == "web\\u002d1"', True),
        ('Meta.team != "ops\\n"', True),
    ],
)
def test_match_operators(expr: str, want: bool) -> None:
    assert ok(expr) is want


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        # and binds tighter than or; not tighter than and
        ('ID == "x" and Name == "x" or Priority == 50', True),
        ('Priority == 50 or ID == "x" and Name == "x"', True),
        ('(Priority == 50 or ID == "x") and Name == "x"', False),
        ('not ID == "x" and Name == "web"', True),
        ('not (ID == "web-1" and Name == "x")', True),
        ('not ID == "web-1" or Name == "web"', True),
        ('not (ID == "web-1" or Name == "x")', False),
        ('not not ID == "web-1"', True),
        ('((ID == "web-1"))', True),

        ('  ID == "web-1"  ', True),
        ('ID == "web-1"\nand\tPriority == 50', True),
    ],
)
def test_boolean_precedence(expr: str, want: bool) -> None:
    assert ok(expr) is want


def test_ast_shape() -> None:
    assert parse('a == 1 or b == 2 and not c is empty') == Or(
        Match(("a",), "==", "1"), And(Match(("b",), "==", "2"), Not(Match(("c",), "is empty"))))
    assert parse('"x" not in A.b["c d"]') == Match(("A", "b", "c d"), "not in", "x")
    assert parse("not not a == 1") == Match(("a",), "==", "1")
    assert parse('notes == "x"') == Match(("notes",), "==", "x")  # a selector, not "not es"
    assert parse("android in Tags") == Match(("Tags",), "in", "android")


@pytest.mark.parametrize(
    ("expr", "want"),
    [
        # a key missing from a nested object: bexpr's "not present" answers, no error
        ('Meta.nosuch == "x"', False),
        ('Meta.nosuch != "x"', True),
        ('Meta["nosuch"] matches "."', False),
        ('Meta["nosuch"] not matches "."', True),
        ('"x" in Meta.nosuch', False),
        ('"x" not in Meta.nosuch', True),
        ("Meta.nosuch is empty", True),
        ("Meta.nosuch is not empty", False),
        ('JobSummary.Summary.db.Running == 1', False),
        # a null on the way counts as missing
        ('NoMeta.team == "ops"', False),
        ('NoMeta.team != "ops"', True),
        ('NoMeta == "x"', False),
    ],
)
def test_missing_nested_keys_are_not_errors(expr: str, want: bool) -> None:
    assert ok(expr) is want


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ('InvalidField == "value"', "error finding value in datum: /InvalidField at part 0: couldn't find struct"),
        ('ID.x == "y"', "error finding value in datum: /ID/x at part 1"),
        ("Datacenters.5 == dc1", "index 5 out of range"),
        ("Datacenters.x == dc1", 'failed to parse index "x"'),
        ('Priority == "abc"', 'error getting match value in expression: strconv.ParseInt: parsing "abc"'),
        ("Priority == 1.5", "strconv.ParseInt"),
        ('Stop == "yes"', "strconv.ParseBool"),
        ('Ratio == "half"', "strconv.ParseFloat"),
        ('Meta == "x"', "unable to find suitable primitive comparison function"),
        ('"g" in TaskGroups', "unable to find suitable primitive comparison function"),
        ('Priority contains "5"', 'Cannot perform in/contains operations on type int for selector: "Priority"'),
        ('Priority matches "5"', "Value of type int is not convertible to []byte"),
        ("Stop is empty", "Cannot perform is empty on type bool"),
    ],
)
def test_evaluation_errors(expr: str, needle: str) -> None:
    with pytest.raises(FilterEvalError) as e:
        ok(expr)
    assert needle in e.value.message


def test_missing_top_level_field_errors_only_when_evaluated() -> None:
    f = Filter('InvalidField == "value"')
    assert f.select([]) == []
    with pytest.raises(FilterEvalError):
        f.select([JOB])


def test_and_or_short_circuit_like_bexpr() -> None:
    # the right side is never evaluated, so its error never happens
    assert ok('ID == "x" and InvalidField == "v"') is False
    assert ok('ID == "web-1" or InvalidField == "v"') is True
    with pytest.raises(FilterEvalError):
        ok('ID == "web-1" and InvalidField == "v"')


@pytest.mark.parametrize(
    ("expr", "needle"),
    [
        ("", "1:1 (0): the expression is empty"),
        ("   ", "the expression is empty"),
        ("NotValid", "1:9 (8): unexpected end of input after the selector 'NotValid'"),
        ("ID ==", "expected a value after '=='"),
        ('ID = "x"', "expected ==, !="),
        ('ID == "x" ID == "y"', "expected 'and', 'or'"),
        ('ID == "x" and', "got end of input"),
        ('(ID == "x"', "unmatched parentheses"),
        ('ID == "x")', "unmatched ')'"),
        ('(ID == "x" ID', "expected ')'"),
        ('ID == "abc', "unterminated string literal"),
        ("ID == `abc", "unterminated string literal"),
        ('ID == "a\\qb"', "invalid escape sequence"),
        ("ID == 1abc", "invalid number literal"),
        ("ID == 01", "invalid number literal"),
        ('Meta[team] == "x"', "invalid index"),
        ('Meta["team" == "x"', "unclosed index expression"),
        ('Meta. == "x"', "after '.'"),
        ('"x" in', "expected a selector after 'in'"),
        ('"x" in "y"', "JSON pointer"),
        ('"x" == ID', "put the selector first"),
        ("5 == ID", "expected 'in' or 'not in'"),
        ('ID matches "("', "Failed to compile regular expression"),
        ('ID contains', "expected a value after 'contains'"),
        ("== 1", "expected a selector"),
        ("ID is", "expected =="),
        ('ID == "x" and\n  Foo =! 1', "2:7 (20)"),
    ],
)
def test_syntax_errors(expr: str, needle: str) -> None:
    with pytest.raises(FilterSyntaxError) as e:
        parse(expr)
    assert needle in e.value.message


def test_select_keeps_order_and_filters_a_list() -> None:
    allocs = [
        {"ID": "a1", "ClientStatus": "running", "TaskStates": {"web": {"State": "running"}}},
        {"ID": "a2", "ClientStatus": "complete", "TaskStates": None},
        {"ID": "a3", "ClientStatus": "running", "TaskStates": {"web": {"State": "dead"}}},
    ]
    f = Filter('ClientStatus == "running" and TaskStates.web.State != "dead"')
    assert [a["ID"] for a in f.select(allocs)] == ["a1"]
    assert [a["ID"] for a in Filter('ClientStatus == "dead"').select(allocs)] == []
    assert [a["ID"] for a in Filter('TaskStates is empty').select(allocs)] == ["a2"]
    assert [a["ID"] for a in Filter('"web" in TaskStates').select(allocs)] == ["a1", "a3"]


def test_unknown_field_error_names_the_fields_there_are() -> None:
    with pytest.raises(FilterEvalError) as e:
        ok('Stauts == "running"')
    assert e.value.message.startswith('error finding value in datum: /Stauts at part 0: '
                                      'couldn\'t find struct field with name "Stauts" (the listed objects have: ')
    assert "Status, Stop" in e.value.message


def test_long_and_or_chains_and_runs_of_not_need_no_deep_stack() -> None:
    # as many terms as the stack could never hold frames for: parsed and evaluated in a loop
    n = 5000
    assert ok(" and ".join(["Stop == false"] * n))
    assert not ok(" and ".join(["Stop == false"] * (n - 1) + ["Stop == true"]))
    assert ok(" or ".join(["Stop == true"] * (n - 1) + ["Stop == false"]))
    assert not ok(" or ".join(["Stop == true"] * n))
    assert ok(" and ".join(f"(Priority == 50 or ID == \"x{i}\")" for i in range(n)))
    assert ok("not " * 3001 + "Stop == true") and not ok("not " * 3000 + "Stop == true")
    # the same AST shape as before for short chains: folded to the right
    a, b, c = (Match((x,), "==", "1") for x in "abc")
    assert parse("a == 1 and b == 1 and c == 1") == And(a, And(b, c))
    assert parse("a == 1 or b == 1 or c == 1") == Or(a, Or(b, c))


def test_deep_parentheses_are_a_syntax_error_not_a_crash() -> None:
    assert ok("(" * MAX_NESTING + "Stop == false" + ")" * MAX_NESTING)
    for depth in (MAX_NESTING + 1, 3000):
        with pytest.raises(FilterSyntaxError) as e:
            parse("(" * depth + "Stop == false" + ")" * depth)
        assert f"parentheses nest deeper than {MAX_NESTING} levels" in e.value.message
    with pytest.raises(FilterSyntaxError, match="nest deeper"):
        parse("not (" * 3000 + "Stop == false" + ")" * 3000)


def test_a_backtracking_regex_is_stopped_by_the_time_budget() -> None:
    # exponential for a backtracking engine (Python's re: seconds on 36 characters); RE2 is linear
    ids = [{"ID": "a" * 36} for _ in range(10)]
    f = Filter('ID matches "^(a|aa)+[xyz]"')
    t0 = time.monotonic()
    with pytest.raises(FilterEvalError) as e:
        f.select(ids)
    took = time.monotonic() - t0
    assert took < 1.0, took  # the budget is shared by the whole list: not 10 x 0.1 s
    assert e.value.message.startswith('the regular expression "^(a|aa)+[xyz]" took too long to match ID '
                                      f"(a filter may spend {REGEX_BUDGET_S:g}s matching, plus 50µs per match)")
    # ordinary patterns over many objects stay far inside the budget
    many = [{"ID": f"web-{i:05d}"} for i in range(50000)]
    assert len(Filter('ID matches "^web-0+1[0-9]$"').select(many)) == 10
    assert len(Filter('ID not matches "[13579]$" and ID matches "^web"').select(many)) == 25000
