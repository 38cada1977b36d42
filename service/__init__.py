"""The application layer: what the command line, the HTTP API and the pages
can do, in one place. They parse, authorise and render; this decides.

:class:`Application` works over one :class:`~cadence.runtime.engine.Engine`
with an injected clock, and answers in pydantic models (the JSON the API
sends). Refusals are :class:`~cadence.errors.CadenceError` values with
messages for people, the same wherever they are shown.
"""

from cadence.service.application import Application, NotFound

__all__ = ["Application", "NotFound"]
