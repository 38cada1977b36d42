"""cadence: sales campaigns as code.

``cadence.grammar`` reads ``.campaign`` files into a typed AST,
``cadence.compiler`` checks them and builds the step graph and IR, and
``cadence.runtime`` turns a compiled campaign into timed sends and tasks.
"""

__version__ = "0.1.0"
