"""The fast parse driver (hcl/fastparse.py) against Lark itself, on generated and sample input.

Every other jobspec test also compares the two (see conftest's ``_differential_parse``); these
tests aim at what the driver does differently: the post-lexer's newline merging, keyword names,
single-child reduction chains, and the lexer's per-character narrowing of the terminal regexes.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rawexec.jobspec import parse_file
from rawexec.jobspec.hcl import structure
from rawexec.jobspec.hcl.fastparse import _FASTER_REGEX, FastParseError, _Alternatives, _first_chars
from rawexec.jobspec.hcl.tree import from_lark
from tests.jobspec.conftest import CORPUS, check_fast_parse

SETTINGS = settings(max_examples=400, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _fast() -> Any:
    fast = structure._fast_parser()
    assert fast is not None
    return fast


def test_the_fast_driver_is_built_and_used_for_valid_files() -> None:
    fast = _fast()
    for path in sorted(CORPUS.glob("*.hcl")):
        text = path.read_text() + "\n"
        check_fast_parse(text)
        fast.parse(text)  # no FastParseError: valid files never need the fallback


def test_invalid_text_falls_back_to_lark_errors() -> None:
    fast = _fast()
    for text in ['job "x" {\n  a = \n}\n', 'job "x" {\n', "a = [1,\n", "a = \"${\"\n", "a = 1 +\n", "\x00\n"]:
        check_fast_parse(text)
        try:
            fast.parse(text)
        except FastParseError:
            pass
        else:
            raise AssertionError(f"accepted {text!r}")


# Generated HCL: attributes and blocks with expressions of every kind --------------------------
NAMES = st.sampled_from(["a", "b_1", "for", "in", "if", "endif", "else", "true", "null", "for_each", "x-y",
                         "driver", "é", "var", "local"])
LEAVES = st.sampled_from(["1", "-2", "1.5", "1e3", "-0.5e-2", "true", "false", "null", "var.x", "local.y",
                          '"s"', '""', '"a${var.x}b"', '"$${x}"', '"%%{x}"', '"%{ if true }y%{ else }n%{ endif }"',
                          '"%{ for v in [1] ~}${v}%{ endfor }"', '"\\n\\u00e9\\""', "attr.z", 'env["HOME"]',
                          "x[0]", "x.*.y", "x[*].y", "x.0", "upper(\"a\")", "merge({}, {a = 1})",
                          "f(1, 2...)", "[for v in [1, 2] : v if v > 1]", "{for k, v in {a = 1} : k => v...}",
                          "<<EOT\nhello ${var.x}\nEOT\n", "<<-EOT\n  indented\n  EOT\n", '\\"q\\"',
                          "provider::p::f(1)"])
OPS = st.sampled_from([" + ", " - ", " * ", " / ", " % ", " == ", " != ", " < ", " > ", " <= ", " >= ", " && ",
                       " || ", "\n  + ", "\n  && ", " ?\n ", "\n"])
SEPS = st.sampled_from([", ", ",\n", "\n, ", " ,", ",\n\n"])


@st.composite
def expressions(draw: st.DrawFn, depth: int = 0) -> str:
    if depth > 3:
        return draw(LEAVES)
    kind = draw(st.integers(0, 7))
    sub = expressions(depth + 1)
    if kind == 0:
        return draw(sub) + draw(OPS) + draw(sub)
    if kind == 1:
        return f"{draw(sub)} ? {draw(sub)} : {draw(sub)}"
    if kind == 2:
        return "[" + draw(SEPS).join(draw(st.lists(sub, max_size=3))) + "]"
    if kind == 3:
        keys = draw(st.lists(NAMES, max_size=3))
        return "{" + draw(SEPS).join(f"{k} = {draw(sub)}" for k in keys) + "}"
    if kind == 4:
        return f"({draw(sub)})"
    if kind == 5:
        return ("!" if draw(st.booleans()) else "-") + draw(LEAVES)
    if kind == 6:
        return f'"x${{{draw(sub)}}}y"'
    return draw(LEAVES)


@st.composite
def bodies(draw: st.DrawFn, depth: int = 0) -> str:
    lines = []
    for _ in range(draw(st.integers(0, 4))):
        what = draw(st.integers(0, 5))
        if what <= 2 or depth > 2:
            lines.append(f"{draw(NAMES)} = {draw(expressions())}")
        elif what == 3:
            lines.append(draw(st.sampled_from(["# c", "// c", "/* c\n */", ""])))
        else:
            labels = " ".join(f'"{lab}"' for lab in draw(st.lists(NAMES, max_size=2)))
            lines.append(f"{draw(NAMES)} {labels} {{\n{draw(bodies(depth + 1))}\n}}")
    return "\n".join(lines)


@SETTINGS
@given(bodies())
def test_generated_hcl_gives_the_same_tree(text: str) -> None:
    check_fast_parse(text + "\n")


@SETTINGS
@given(st.lists(st.sampled_from([*'ab1 \t\n{}[]()",.=:?!<>-+*/%&|$~#\\\'é_', "${", "%{", "<<E\n"]),
                max_size=80).map("".join))
def test_character_soup_gives_the_same_outcome(text: str) -> None:
    check_fast_parse(text + "\n")


# The lexer's per-character narrowing -------------------------------------------------------------
def _all_alternatives() -> list[_Alternatives]:
    lexers = _fast().lexers
    seen: dict[int, _Alternatives] = {}
    for state in range(len(lexers.lexer_of)):  # every lexer state, including those no test text reached
        seen.setdefault(id(lexers[state][-1]), lexers[state][-1])
    return list(seen.values())


@settings(max_examples=300, deadline=None, database=None)
@given(st.lists(st.sampled_from([*'aZ_09 \t\r\n{}[]()",.=:?!<>-+*/%&|$~#\\\'é', "${", "%{", "<<EOT\n", "EOT\n",
                                  "*/", "=>"]),
                min_size=1, max_size=30).map("".join))
def test_narrowed_regex_matches_like_the_full_alternation(text: str) -> None:
    for alts in _all_alternatives():
        full = alts.full(text, 0)
        narrowed = alts.matcher(text[0])(text, 0)
        if full is None:
            assert narrowed is None
        else:
            assert narrowed is not None and (narrowed.lastgroup, narrowed.group(0)) == (full.lastgroup, full.group(0))


def test_first_characters_of_regexes() -> None:
    assert _first_chars(r"ab|cd", 0) == ("in", frozenset("ac"))
    assert _first_chars(r"(?:x)?y", 0) == ("in", frozenset("xy"))
    assert _first_chars(r"[^a]", 0) == ("notin", frozenset("a"))
    assert _first_chars(r"(?!a)[a-c]", 0) == ("in", frozenset("abc"))
    assert _first_chars(r"\s", 0) == ("notin", frozenset())  # categories: every character
    assert _first_chars(r"(?i:a)", 0) == ("notin", frozenset())  # inline flags: every character
    assert _first_chars(r"a*", 0) == ("notin", frozenset())  # may be empty: every character


SAMPLES = ["# c\n", "// c\n", "/* c\n */", "\n  ", "<<EOT\nx\nEOT\n", "<<-EOT\n  x\n  EOT\n", "1.5e3", "-1", "-1.5",
           "1e-3", "=>", "...", ".*", "[*]", "${", "%{", '"a"', "==", "!=", "<=", ">=", "&&", "||", " = ", " : ", "::",
           '\\"x\\"', "$${a}", "%%{a}", "abc", "for_each", "in", "~", "x$y", "x%y", "\t ", "\r\n", "é"]


def test_narrowed_regex_on_every_kind_of_terminal() -> None:
    for alts in _all_alternatives():
        for text in SAMPLES:
            full = alts.full(text, 0)
            narrowed = alts.matcher(text[0])(text, 0)
            got = None if narrowed is None else (narrowed.lastgroup, narrowed.group(0))
            assert got == (None if full is None else (full.lastgroup, full.group(0))), (text, alts.terms)


def test_literal_characters_need_no_regex() -> None:
    for alts in _all_alternatives():
        for text in SAMPLES + list('{}[](),."=:?!<>-+*/%&|$~#\\'):
            name = alts.literal(text[0])
            if name is None:
                continue
            full = alts.full(text, 0)
            assert full is not None and (full.lastgroup, full.group(0)) == (name, text[0]), (text, alts.terms)


# The shipped tables: parsing without Lark -----------------------------------------------------------
def test_shipped_tables_are_lark_s_tables() -> None:
    from rawexec.jobspec.hcl import _hcl2_tables, tables
    from rawexec.jobspec.hcl.fastparse import compile_tables

    assert tables.installed_key() == _hcl2_tables.KEY, (
        "the installed lark/python-hcl2 differ from the shipped parse tables; regenerate them with "
        'python -c "from rawexec.jobspec.hcl import tables; tables.write()"')
    fresh, shipped = json.loads(json.dumps(compile_tables(structure._parser()))), tables.load()
    assert shipped is not None
    assert _canonical(fresh) == _canonical(shipped)


def _canonical(t: dict[str, Any]) -> dict[str, Any]:
    """The tables with states, reduce actions and lexers numbered in the order a walk from the start
    state meets them (shifts and gotos in symbol order). Lark numbers its LALR states in set order,
    which follows the hash seed of the process that built them (and its grammar cache keeps that
    numbering): the same automaton can come out numbered differently; this form cannot."""
    symbols = t["symbols"]
    rows = [dict(zip((symbols[i] for i in names), targets, strict=True)) for names, targets in t["states"]]
    order = [t["start"]]
    seen = {t["start"]: 0}
    for state in order:
        for name in sorted(rows[state]):
            target = rows[state][name]
            if target >= 0 and target not in seen:
                seen[target] = len(order)
                order.append(target)
    assert len(order) == len(rows), "a state no shift reaches"
    acts: dict[int, int] = {}
    lexers: dict[int, int] = {}
    out_states = []
    for state in order:
        row = {}
        for name in sorted(rows[state]):
            target = rows[state][name]
            if target >= 0:
                row[name] = ["shift", seen[target]]
            else:
                row[name] = ["reduce", acts.setdefault(-1 - target, len(acts))]
        out_states.append([row, lexers.setdefault(t["lexer_of"][state], len(lexers))])
    return {"format": t["format"], "end": seen[t["end"]], "states": out_states,
            "actions": [t["actions"][i] for i in sorted(acts, key=acts.__getitem__)],
            "lexers": [t["lexers"][i] for i in sorted(lexers, key=lexers.__getitem__)],
            "operators": t["operators"]}


def test_valid_files_parse_without_importing_lark() -> None:
    code = ("import sys; from rawexec.jobspec import parse_hcl; "
            "job = parse_hcl('job \"x\" {\\n group \"g\" {\\n task \"t\" {\\n driver = \"raw_exec\"\\n"
            " config { command = \"/bin/true\" }\\n }\\n }\\n}\\n', env={}); "
            "assert job.groups[0].tasks[0].config['command'] == '/bin/true'; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('lark', 'hcl2')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_other_lark_versions_compile_the_tables_from_lark(monkeypatch: pytest.MonkeyPatch) -> None:
    from rawexec.jobspec.hcl import tables

    monkeypatch.setattr(tables, "installed_key", lambda: "lark 0.0; python-hcl2 sha256 0; format 1")
    assert tables.load() is None
    monkeypatch.setattr(structure, "_fast_parser", structure._fast_parser.__wrapped__)
    fast = structure._fast_parser()
    assert fast is not None
    text = (CORPUS / sorted(p.name for p in CORPUS.glob("*.hcl"))[0]).read_text() + "\n"
    assert fast.parse(text) == _fast().parse(text)


def test_lark_s_tree_is_used_when_the_fast_parser_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    fast = _fast()
    paths = [p for p in sorted(CORPUS.glob("*.hcl")) if not p.name.startswith("variables")]
    expected = [parse_file(p, env={}) for p in paths]
    monkeypatch.setattr(structure, "_fast_parser", lambda: None)
    assert [parse_file(p, env={}) for p in paths] == expected
    deep = "a = " + " + ".join(["1"] * 3000) + "\n"  # deeper than the recursion limit: converted iteratively
    assert from_lark(structure._parser().parse(deep)) == fast.parse(deep)


@settings(max_examples=500, deadline=None, database=None)
@given(st.text(alphabet='ab$%{}"\\\n é\t~', max_size=24), st.integers(0, 24))
def test_faster_regexes_match_like_lark_s(text: str, start: int) -> None:
    for slow, fast in _FASTER_REGEX.items():
        a, b = re.compile(slow).match(text, start), re.compile(fast).match(text, start)
        assert (a and a.group()) == (b and b.group()), (slow, text, start)


def test_faster_regexes_are_used() -> None:
    used = {rx for alts in _all_alternatives() for _, rx in alts.terms}
    assert set(_FASTER_REGEX) <= used


def test_literals_exclude_newline_ignored_and_keyword_terminals() -> None:
    assert _Alternatives([["LBRACE", r"\{"], ["NAME", "[a-z]+"]], 0, {}, {}).literal("{") == "LBRACE"
    assert _Alternatives([["LBRACE", r"\{"]], 0, {}, {}, special=frozenset({"LBRACE"})).literal("{") is None
    assert _Alternatives([["NAME", "[a-z]+"]], 0, {}, {}).literal("a") is None  # not the character itself
