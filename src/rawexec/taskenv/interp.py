"""Nomad's simple ``${name}`` interpolation (``helper/args``, facts §5.3).

A name (letters, digits, ``_``, ``-``, ``.``) is looked up in the task env first, then in the
node attributes (``node.unique.id``, ``attr.kernel.name``, ``meta.rack``, ...). Names found in
neither are left exactly as written, so ``${UNSET}`` stays ``${UNSET}``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

__all__ = ["SIMPLE_RE", "replace_env"]

SIMPLE_RE = re.compile(r"\$\{[a-zA-Z0-9_\-\.]+\}")


def replace_env(text: str, env: Mapping[str, str], node_attrs: Mapping[str, str] | None = None) -> str:
    """Replace every ``${name}`` in ``text`` from ``env``, then ``node_attrs``; unknown names stay."""
    if "${" not in text:
        return text
    attrs = node_attrs or {}

    def sub(m: re.Match[str]) -> str:
        name = m.group(0)[2:-1]
        if name in env:
            return env[name]
        if name in attrs:
            return attrs[name]
        return m.group(0)

    return SIMPLE_RE.sub(sub, text)
