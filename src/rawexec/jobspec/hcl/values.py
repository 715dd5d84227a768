"""Values the evaluator produces, and the errors it raises."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rawexec.jobspec.diagnostics import Pos

__all__ = ["Context", "ErrorReported", "EvalError", "NeedsRuntime", "Runtime", "type_name"]


@dataclass(frozen=True)
class Runtime:
    """A reference Nomad resolves on the client (``attr.x``, ``NOMAD_TASK_DIR``, ``env["X"]``).

    ``text`` is the expression source without ``${}``; it lands in the model as ``"${text}"``.
    """

    text: str

    def render(self) -> str:
        return "${" + self.text + "}"


class EvalError(Exception):
    """An expression could not be evaluated; ``pos`` points at it."""

    def __init__(self, message: str, pos: Pos | None = None, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.pos = pos
        self.hint = hint


class ErrorReported(EvalError):
    """The expression uses a value whose error was already reported (a missing variable, a failed
    local): like HCL's error values, it fails silently so no misleading follow-on errors appear."""


class NeedsRuntime(Exception):
    """A runtime value reached an operator or function: the enclosing ${} stays verbatim."""


def type_name(value: object) -> str:
    """HCL's name for the type of a value (for messages)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "tuple"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, Runtime):
        return "runtime value"
    return type(value).__name__


@dataclass
class Context:
    """What names mean: variables, lazily-evaluated locals, the job file's directory."""

    filename: str = "<job>"
    base_dir: str = "."
    variables: dict[str, Any] = field(default_factory=dict)
    declared: set[str] = field(default_factory=set)
    local_lookup: Callable[[str, Pos], Any] | None = None
    local_names: Callable[[], list[str]] | None = None
    allow_vars: bool = True
