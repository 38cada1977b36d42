"""cadence: sales campaigns as code.

``cadence.grammar`` reads ``.campaign`` files into a typed AST,
``cadence.compiler`` checks them and builds the step graph and IR, and
``cadence.runtime`` turns a compiled campaign into timed sends and tasks.

The library API never prints or exits::

    result = cadence.compile_file("campaign.campaign")
    if result.ok:
        ir = result.ir
    else:
        for diagnostic in result.diagnostics: ...
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from cadence.compiler.compile import CompileResult, compile_file, compile_source

__all__ = ["CompileResult", "__version__", "compile_file", "compile_source"]


def __getattr__(name: str) -> Any:
    # Imported on first use, so `import cadence` stays cheap and loads no parser.
    if name in ("CompileResult", "compile_file", "compile_source"):
        from cadence.compiler import compile as driver

        return getattr(driver, name)
    raise AttributeError(f"module 'cadence' has no attribute {name!r}")
