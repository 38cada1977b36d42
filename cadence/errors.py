"""The one base of every error cadence raises on purpose.

An embedding program can catch :class:`CadenceError` for anything cadence
refuses (a bad IR file, a plan it cannot start, a database it cannot open, a
config it cannot use…) and let everything else through as the bug it is. Each
error keeps the built-in base it had (``ValueError``, ``LookupError``…), so
code that caught those still does. Messages are written for people: they
name the file, the key or the value, and say what would be right.
"""

from __future__ import annotations


class CadenceError(Exception):
    """Something cadence refused or could not do; ``str(error)`` says what and why."""
