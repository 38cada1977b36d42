"""The one Jinja environment templates are checked and rendered in (SPEC.md §8):
sandboxed, strict about undefined names, without loaders (no include, extends
or import), and with limits that keep one template from exhausting the machine.
Only Jinja is imported here, so the compiler and the runtime can share it.
"""

from __future__ import annotations

import operator
from typing import Any

from jinja2 import StrictUndefined
from jinja2.exceptions import SecurityError
from jinja2.sandbox import SandboxedEnvironment

MAX_REPEAT = 100_000  # characters or items a `*` may build
MAX_POWER = 1_000


class CampaignEnvironment(SandboxedEnvironment):
    intercepted_binops = frozenset(["*", "**"])

    def call_binop(self, context: Any, op: str, left: Any, right: Any) -> Any:
        if op == "*":
            for sequence, count in ((left, right), (right, left)):
                sized = isinstance(sequence, str | list | tuple) and isinstance(count, int)
                if sized and len(sequence) * count > MAX_REPEAT:
                    raise SecurityError(f"`*` would build more than {MAX_REPEAT} items")
            return operator.mul(left, right)
        if op == "**" and isinstance(right, int | float) and abs(right) > MAX_POWER:
            raise SecurityError(f"`**` with an exponent above {MAX_POWER}")
        return super().call_binop(context, op, left, right)


def environment() -> CampaignEnvironment:
    return CampaignEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
