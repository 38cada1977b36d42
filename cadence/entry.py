"""The ``cadence`` program's entry point: sets the process up, then runs the
command line (``cadence.cli``).

Starting allocates a few hundred thousand objects that live as long as the
process (modules, classes, pydantic validators, parser tables) and almost no
cyclic garbage. With the collector's default thresholds they are rescanned
again and again while they are made: measured, about 60 ms of a 700 ms
``cadence check``. So the collector is paused while the command line is
imported, and what was imported is then frozen (``gc.freeze``: moved where no
collection looks), so that no later collection, in a short command or a
long-running one (``run``, ``lsp``), scans it again. Embedding the library
never goes through here: the collector belongs to the embedding process.
"""

from __future__ import annotations

import gc


def main() -> None:
    gc.disable()
    try:
        from cadence.cli import main as run_command_line
    finally:
        gc.freeze()  # before enabling, or the first collection scans it all
        gc.enable()
    run_command_line()
