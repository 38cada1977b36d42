"""cadence: sales campaigns as code.

``cadence.grammar`` reads ``.campaign`` files into a typed AST,
``cadence.compiler`` checks them and builds the step graph and IR, and
``cadence.runtime`` turns a compiled campaign into timed sends and tasks.

The names below are the library's public surface (docs/api.md is their
reference). The library never prints or exits; what it refuses is a
:class:`CadenceError`, and a person a campaign cannot take is a value::

    result = cadence.compile_file("campaign.campaign")
    if not result.ok:
        print(result.render())  # as `cadence check` shows them
    else:
        planned = cadence.plan(result.ir, people, start)
        for action in planned: ...
        planned.problems  # the people skipped, with why
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cadence.compiler.compile import CompileResult, compile_file, compile_source
    from cadence.compiler.ir import Campaign, IRError, dump_ir, load_ir
    from cadence.diagnostics import Diagnostic, Severity
    from cadence.errors import CadenceError
    from cadence.runtime.config import ConfigError
    from cadence.runtime.engine import Engine, EngineError
    from cadence.runtime.migrations import SchemaError
    from cadence.runtime.people import PeopleError, Person, RowProblem, read_people
    from cadence.runtime.planner import Action, Plan, PlanError, plan
    from cadence.runtime.store import StoreError

__all__ = [
    "Action",
    "CadenceError",
    "Campaign",
    "CompileResult",
    "ConfigError",
    "Diagnostic",
    "Engine",
    "EngineError",
    "IRError",
    "PeopleError",
    "Person",
    "Plan",
    "PlanError",
    "RowProblem",
    "SchemaError",
    "Severity",
    "StoreError",
    "__version__",
    "compile_file",
    "compile_source",
    "dump_ir",
    "load_ir",
    "plan",
    "read_people",
]

# Each name is imported from its module on first use, so `import cadence`
# stays cheap: checking a campaign never loads the engine's libraries.
_HOMES = {
    "CompileResult": "cadence.compiler.compile",
    "compile_file": "cadence.compiler.compile",
    "compile_source": "cadence.compiler.compile",
    "Campaign": "cadence.compiler.ir",
    "IRError": "cadence.compiler.ir",
    "dump_ir": "cadence.compiler.ir",
    "load_ir": "cadence.compiler.ir",
    "Diagnostic": "cadence.diagnostics",
    "Severity": "cadence.diagnostics",
    "CadenceError": "cadence.errors",
    "ConfigError": "cadence.runtime.config",
    "Engine": "cadence.runtime.engine",
    "EngineError": "cadence.runtime.engine",
    "SchemaError": "cadence.runtime.migrations",
    "PeopleError": "cadence.runtime.people",
    "Person": "cadence.runtime.people",
    "RowProblem": "cadence.runtime.people",
    "read_people": "cadence.runtime.people",
    "Action": "cadence.runtime.planner",
    "Plan": "cadence.runtime.planner",
    "PlanError": "cadence.runtime.planner",
    "plan": "cadence.runtime.planner",
    "StoreError": "cadence.runtime.store",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'cadence' has no attribute {name!r}")
    return getattr(importlib.import_module(home), name)


def __dir__() -> list[str]:
    return sorted(__all__)
