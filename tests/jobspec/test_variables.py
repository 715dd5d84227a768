"""HCL2 variables: declarations, types, -var, -var-file, NOMAD_VAR_*, precedence, locals."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawexec.jobspec import parse_file, parse_hcl
from rawexec.jobspec.model import thaw
from tests.jobspec.conftest import CORPUS, errors_of, parse, task_job

DECL = '''
variable "name" {
  type    = string
  default = "from-default"
}
variable "n" {
  type    = number
  default = 1
}
variable "flags" {
  type    = list(string)
  default = []
}
variable "labels" {
  type    = map(string)
  default = {}
}
variable "on" {
  type    = bool
  default = false
}
'''
JOB = DECL + task_job('user = var.name\nmeta = var.labels\nconfig {\n command = "/bin/x"\n args = concat(var.flags, '
                      '[tostring(var.n + 1), tostring(var.on)])\n }', group_body="count = var.n")


def _t(job: object) -> tuple[str, dict[str, str], list[str], int]:
    t = job.groups[0].tasks[0]  # type: ignore[attr-defined]
    return t.user, dict(t.meta), list(thaw(t.config)["args"]), job.groups[0].count  # type: ignore[attr-defined]


def test_defaults() -> None:
    text = JOB.replace('      config {\n        command = "/bin/true"\n      }\n', "")
    assert _t(parse(text)) == ("from-default", {}, ["2", "false"], 1)


JOB = JOB.replace('      config {\n        command = "/bin/true"\n      }\n', "")


def test_cli_vars_are_converted_to_the_declared_type() -> None:
    job = parse(JOB, variables={"name": "cli", "n": "3", "flags": '["-v", "-x"]', "labels": '{a = "b"}',
                                "on": "true"})
    assert _t(job) == ("cli", {"a": "b"}, ["-v", "-x", "4", "true"], 3)


def test_env_vars() -> None:
    job = parse(JOB, env={"NOMAD_VAR_name": "env", "NOMAD_VAR_n": "5", "NOMAD_VAR_undeclared": "ignored"})
    assert _t(job)[0] == "env" and _t(job)[3] == 5


def test_precedence_default_env_file_cli(tmp_path: Path) -> None:
    f1 = tmp_path / "a.vars.hcl"
    f1.write_text('name = "file1"\nn = 7\n')
    f2 = tmp_path / "b.vars.json"
    f2.write_text('{"name": "file2"}')
    env = {"NOMAD_VAR_name": "env", "NOMAD_VAR_n": "6"}
    assert _t(parse(JOB, env=env))[::3] == ("env", 6)
    assert _t(parse(JOB, env=env, var_files=[str(f1)]))[::3] == ("file1", 7)
    assert _t(parse(JOB, env=env, var_files=[str(f1), str(f2)]))[::3] == ("file2", 7)
    assert _t(parse(JOB, env=env, var_files=[str(f1), str(f2)], variables={"name": "cli"}))[::3] == ("cli", 7)


def test_corpus_var_file() -> None:
    job = parse_file(CORPUS / "variables.nomad.hcl", variables={"region": "r"},
                     var_files=[str(CORPUS / "variables.vars.hcl")], env={})
    assert job.groups[0].count == 4
    assert dict(job.meta) == {"team": "platform", "env": "prod", "version": "1.4.2"}
    assert job.region == "r"


@pytest.mark.parametrize(("variables", "text"), [
    ({"n": "many"}, 'cannot convert "many" to number'),
    ({"on": "yes"}, "bool required"),
    ({"flags": '"notalist"'}, "list(string) required, got string"),
    ({"nope": "1"}, 'Undefined -var variable: a "nope" variable was passed in but has not been declared'),
])
def test_bad_cli_values(variables: dict[str, str], text: str) -> None:
    errs = errors_of(JOB, variables=variables)
    assert any(text in e for e in errs), errs


def test_undeclared_in_var_file(tmp_path: Path) -> None:
    f = tmp_path / "x.hcl"
    f.write_text('nmae = "typo"\n')
    errs = errors_of(JOB, var_files=[str(f)])
    assert any('"nmae"' in e and 'did you mean "name"?' in e and e.startswith(f"{f}:1:1") for e in errs), errs


def test_missing_var_file() -> None:
    assert any("Failed to read variables file" in e for e in errors_of(JOB, var_files=["/nonexistent/v.hcl"]))


def test_default_of_wrong_type() -> None:
    errs = errors_of('variable "n" {\n type = number\n default = "abc"\n}\n' + task_job(""))
    assert any("Invalid default value for variable" in e for e in errs)


def test_invalid_type_spec() -> None:
    errs = errors_of('variable "n" {\n type = strng\n}\n' + task_job(""))
    assert any('"strng" is not a valid type' in e and 'did you mean "string"' in e for e in errs)


def test_validation_passes_with_good_value_and_fails_with_bad() -> None:
    text = ('variable "port" {\n type = number\n default = 80\n validation {\n'
            ' condition = var.port > 0 && var.port < 65536\n error_message = "port out of range"\n }\n}\n'
            + task_job("meta {\n p = var.port\n }"))
    assert parse(text).groups[0].tasks[0].meta["p"] == "80"
    assert any("Invalid value for variable: port out of range" in e
               for e in errors_of(text, variables={"port": "70000"}))


def test_object_and_tuple_types() -> None:
    text = ('variable "svc" {\n type = object({ name = string, port = number })\n}\n'
            'variable "pair" {\n type = tuple([string, number])\n default = ["a", 1]\n}\n'
            + task_job('user = "${var.svc.name}:${var.svc.port}:${var.pair[0]}${var.pair[1]}"'))
    job = parse(text, variables={"svc": '{ name = "db", port = 5432 }'})
    assert job.groups[0].tasks[0].user == "db:5432:a1"


def test_locals_in_any_order_and_referencing_vars() -> None:
    text = ('variable "v" {\n default = "x"\n}\nlocals {\n c = "${local.b}-c"\n b = "${local.a}-b"\n a = var.v\n}\n'
            + task_job("user = local.c"))
    assert parse(text).groups[0].tasks[0].user == "x-b-c"


def test_parse_hcl_base_dir_for_file(tmp_path: Path) -> None:
    (tmp_path / "inc.txt").write_text("content")
    text = task_job('user = file("inc.txt")')
    assert parse_hcl(text, base_dir=str(tmp_path), env={}).groups[0].tasks[0].user == "content"
    assert any('no file exists at "inc.txt"' in e for e in errors_of(text, base_dir="/nonexistent"))


def _user(decl: str, expr: str, **kw: object) -> str:
    return str(parse(decl + task_job(f"user = {expr}"), **kw).groups[0].tasks[0].user)


def test_optional_object_attribute_may_be_absent_and_is_null() -> None:
    decl = ('variable "o" {\n type = object({ name = string, size = optional(number) })\n'
            ' default = { name = "o" }\n}\n')
    assert _user(decl, '"${var.o.name}:${var.o.size == null}"') == "o:true"
    assert _user(decl, '"${var.o.name}:${var.o.size}"', variables={"o": '{ name = "v", size = "7" }'}) == "v:7"


def test_optional_with_default_fills_absent_and_null_attributes() -> None:
    decl = ('variable "o" {\n type = object({ name = string, size = optional(number, 3) })\n'
            ' default = { name = "o" }\n}\n')
    assert _user(decl, '"${var.o.name}:${var.o.size}"') == "o:3"
    assert _user(decl, "jsonencode(var.o)", variables={"o": '{ name = "v", size = null }'}) == '{"name":"v","size":3}'
    assert _user(decl, "jsonencode(var.o)", env={"NOMAD_VAR_o": '{ name = "e", size = 9 }'}) == '{"name":"e","size":9}'


def test_optional_in_nested_objects_and_collections_of_objects(tmp_path: Path) -> None:
    decl = ('variable "svcs" {\n type = list(object({\n  name = string\n  port = optional(number, 80)\n'
            '  check = optional(object({ path = optional(string, "/health"), interval = optional(string) }), {})\n'
            ' }))\n default = [{ name = "a" }, { name = "b", port = 81, check = { path = "/b" } }]\n}\n'
            'variable "byname" {\n type = map(object({ tags = optional(list(string), []) }))\n'
            ' default = { x = {}, y = { tags = ["t"] } }\n}\n')
    assert _user(decl, "jsonencode(var.svcs)") == (
        '[{"check":{"interval":null,"path":"/health"},"name":"a","port":80},'
        '{"check":{"interval":null,"path":"/b"},"name":"b","port":81}]')
    assert _user(decl, "jsonencode(var.byname)") == '{"x":{"tags":[]},"y":{"tags":["t"]}}'
    vf = tmp_path / "v.hcl"
    vf.write_text('svcs = [{ name = "f", check = { interval = "5s" } }]\n')
    assert _user(decl, "jsonencode(var.svcs)", var_files=[str(vf)]) == (
        '[{"check":{"interval":"5s","path":"/health"},"name":"f","port":80}]')


def test_optional_errors() -> None:
    def errs(type_expr: str, default: str = "null") -> list[str]:
        return errors_of(f'variable "o" {{\n type = {type_expr}\n default = {default}\n}}\n' + task_job(""))

    assert any('Invalid default value for optional attribute: cannot convert "zz" to number' in e
               and 'the type of attribute "size" is number' in e
               for e in errs('object({ size = optional(number, "zz") })'))
    assert any('the keyword "optional" is valid only as a modifier for object type attributes' in e
               for e in errs("list(optional(string))"))
    assert any("the optional attribute modifier takes the attribute type and an optional default value, "
               "got 3 argument(s)" in e for e in errs("object({ a = optional(string, 1, 2) })"))
    # A required attribute is still required, wherever the object is; the message says where.
    assert any('Invalid default value for variable: element 1: attribute "name" is required' in e
               and "list(object({name=string, size=optional(number)}))" in e
               for e in errs("list(object({ name = string, size = optional(number) }))", '[{ name = "a" }, {}]'))


def test_convert_function_takes_optional_attributes() -> None:
    assert _user("", 'jsonencode(convert({ a = 1 }, object({ a = string, b = optional(bool, true) })))') == (
        '{"a":"1","b":true}')


def test_a_refused_value_is_one_error_not_also_a_missing_variable() -> None:
    # -var 'ports=[1' used to report the syntax error and then "Missing required variable" as well
    text = ('variable "ports" { type = list(number) }\n'
            'job "j" {\n group "g" {\n task "t" {\n driver = "raw_exec"\n'
            ' config {\n command = "/bin/echo"\n args = ["${var.ports[0]}"]\n }\n }\n }\n}\n')
    errs = errors_of(text, variables={"ports": "[1"})
    assert len(errs) == 1 and "Invalid value for variable: Syntax error" in errs[0], errs
    errs = errors_of(text, env={"NOMAD_VAR_ports": '["x"]'})
    assert len(errs) == 1 and "Invalid value for variable" in errs[0], errs
    assert len(errors_of(text)) == 1 and "Missing required variable" in errors_of(text)[0]
