"""rawexec.taskenv: a task's environment as Nomad's client builds it, and interpolation.

- :class:`TaskEnvBuilder` -> :class:`TaskEnv`: the ``NOMAD_*`` variables (facts §5.2), the
  host environment minus the client's ``env.denylist``, the task's ``env {}``, node attributes.
- :meth:`TaskEnv.replace` / :func:`replace_env`: the simple ``${name}`` interpolation used for
  ``env``, ``meta`` and ``artifact`` fields (unknown names are left as written).
- :meth:`TaskEnv.parse_config` / :func:`evaluate_config`: the driver ``config {}`` evaluation
  (HCL2 template expressions over env/node/attr/meta, with Nomad's function set).
"""

from rawexec.taskenv.builder import (
    DEFAULT_ENV_DENYLIST,
    NodeInfo,
    PortInfo,
    TaskEnv,
    TaskEnvBuilder,
    filter_denied_envvars,
    go_glob,
)
from rawexec.taskenv.hclexpr import EvalContext, evaluate_config, evaluate_template
from rawexec.taskenv.interp import replace_env

__all__ = [
    "DEFAULT_ENV_DENYLIST",
    "EvalContext",
    "NodeInfo",
    "PortInfo",
    "TaskEnv",
    "TaskEnvBuilder",
    "evaluate_config",
    "evaluate_template",
    "filter_denied_envvars",
    "go_glob",
    "replace_env",
]
