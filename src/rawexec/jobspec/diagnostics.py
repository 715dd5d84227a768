"""Error collection for job files: every problem is gathered, then raised once.

A :class:`Diagnostic` carries where (file, line, column), what (the field path, e.g.
``job "web" \u203a group "api" \u203a task "srv" \u203a config``), the message (Nomad's wording where Nomad
has one) and a hint saying how to fix it. :class:`Diagnostics` collects them and raises a
single :class:`rawexec.errors.ValidationError` whose ``.errors`` lists every formatted problem.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from rawexec.errors import ValidationError

__all__ = ["SEP", "Diagnostic", "Diagnostics", "Pos", "did_you_mean", "path_join"]

#: Separator between field path elements in messages.
SEP = " \u203a "

#: Stop collecting after this many errors (a garbage file must not produce megabytes of output).
MAX_ERRORS = 100


class Pos(NamedTuple):
    """A position in a source file (1-based line and column; 0 = unknown).

    A named tuple rather than a frozen dataclass: one is made for every attribute, block and body
    of a job file, and a tuple is several times cheaper to build.
    """

    filename: str = ""
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if not self.filename:
            return ""
        if self.line <= 0:
            return self.filename
        return f"{self.filename}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a job file."""

    message: str
    path: str = ""
    pos: Pos | None = None
    hint: str = ""

    def __str__(self) -> str:
        parts = []
        where = str(self.pos) if self.pos is not None else ""
        if where:
            parts.append(where + ":")
        if self.path:
            parts.append(self.path + ":")
        parts.append(self.message)
        text = " ".join(parts)
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


@dataclass
class Diagnostics:
    """A collector of errors and warnings."""

    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)
    #: Where each field path was written (filled by the HCL reader, used by the validator).
    locations: dict[str, Pos] = field(default_factory=dict)
    #: Field paths whose expression failed (already reported): checks on them stay silent.
    failed: set[str] = field(default_factory=set)

    def error(self, message: str, path: str = "", pos: Pos | None = None, hint: str = "") -> None:
        if len(self.errors) < MAX_ERRORS:
            self.errors.append(Diagnostic(message, path, pos, hint))

    def warn(self, message: str, path: str = "", pos: Pos | None = None, hint: str = "") -> None:
        if len(self.warnings) < MAX_ERRORS:
            self.warnings.append(Diagnostic(message, path, pos, hint))

    def __bool__(self) -> bool:
        return bool(self.errors)

    def raise_if_any(self) -> None:
        if self.errors:
            seen: set[str] = set()
            msgs: list[str] = []
            for d in self.errors:
                s = str(d)
                if s not in seen:
                    seen.add(s)
                    msgs.append(s)
            if len(self.errors) >= MAX_ERRORS:
                msgs.append(f"too many errors; stopped after {MAX_ERRORS}")
            raise ValidationError(msgs)


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """A "did you mean" hint for an unknown name, or "" when nothing is close."""
    cands = sorted(set(candidates))
    lowered = {c.lower(): c for c in cands}
    if name.lower() in lowered:
        return f'did you mean "{lowered[name.lower()]}"?'
    close = difflib.get_close_matches(name, cands, n=1, cutoff=0.6)
    if close:
        return f'did you mean "{close[0]}"?'
    return ""


def path_join(path: str, elem: str) -> str:
    """Append one element to a field path."""
    return f"{path}{SEP}{elem}" if path else elem
