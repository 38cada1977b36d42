"""Pausing Python's cyclic garbage collector while long-lived objects are made.

Parsing and compiling allocate tens of thousands of small objects and free
almost none until they finish. Each allocation burst triggers the collector,
which rescans every live object again and again: measured, that was 40% of a
5,000-step compile. Reference counting still frees what is dropped; cycles
wait for the next collection after the pause.

Importing is the same story at start-up (see ``cadence.entry``): modules,
classes and validators are made once and live as long as the process.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def gc_paused() -> Iterator[None]:
    """Collector off inside the block (nesting is fine), back as it was after."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextmanager
def importing() -> Iterator[None]:
    """Collector off while modules are imported inside the block. In a process
    that froze what it imported at start (the ``cadence`` program does), what
    the block imported is frozen too: otherwise the first collection after it
    would scan every new module object once, for nothing. A process that
    embeds the library never froze anything, and nothing is frozen for it.
    """
    with gc_paused():
        yield
        if gc.get_freeze_count():
            gc.freeze()
