"""The compile step: AST to step graph, placement rules and versioned IR
(docs/semantics.md §2, §4, §5).

``cadence.compiler.ir`` is the only part the runtime reads, so importing this
package loads nothing else (and never lark): the driver is imported on use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cadence.compiler.compile import CompileResult, compile_file, compile_source

__all__ = ["CompileResult", "compile_file", "compile_source"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from cadence.compiler import compile as driver

        return getattr(driver, name)
    raise AttributeError(f"module 'cadence.compiler' has no attribute {name!r}")
