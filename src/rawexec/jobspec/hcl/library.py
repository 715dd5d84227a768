"""Every function a job file may call, by name (Nomad's jobspec2 table, see docs/functions.md).

``try``, ``can`` and ``convert`` are not here: they see their arguments as expressions, so the
evaluator implements them (:data:`EXPRESSION_FUNCTIONS` names them for hints and the docs).
"""

from __future__ import annotations

from rawexec.jobspec.hcl.funcs_collections import COLLECTION_FUNCTIONS
from rawexec.jobspec.hcl.funcs_encoding import ENCODING_FUNCTIONS
from rawexec.jobspec.hcl.funcs_files import FILE_FUNCTIONS
from rawexec.jobspec.hcl.funcs_yaml import YAML_FUNCTIONS
from rawexec.jobspec.hcl.functions import FUNCTIONS as _CORE
from rawexec.jobspec.hcl.functions import Func

__all__ = ["ALL_NAMES", "EXPRESSION_FUNCTIONS", "FUNCTIONS", "NOT_SUPPORTED"]

FUNCTIONS: dict[str, Func] = {**_CORE, **COLLECTION_FUNCTIONS, **ENCODING_FUNCTIONS, **FILE_FUNCTIONS,
                           **YAML_FUNCTIONS}

#: Functions evaluated from their argument expressions (in the evaluator).
EXPRESSION_FUNCTIONS = frozenset({"try", "can", "convert"})

#: Nomad functions this parser does not offer, and why (the error says so instead of "unknown").
NOT_SUPPORTED: dict[str, str] = {
    "bcrypt": "bcrypt needs a bcrypt library, which is not a dependency; hash the secret outside the job file",
    "rsadecrypt": "rsadecrypt needs an RSA library, which is not a dependency; decrypt outside the job file",
}

ALL_NAMES = frozenset(FUNCTIONS) | EXPRESSION_FUNCTIONS
