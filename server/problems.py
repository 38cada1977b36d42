"""Errors as RFC 9457 problem details (``application/problem+json``).

Each refusal of the application layer becomes a 4xx problem whose ``detail``
is the same message the command line prints; an unexpected error is a 500
whose body names only the request id, which the log line carries too. No
traceback ever reaches a client.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException

from cadence.compiler.ir import IRError
from cadence.errors import CadenceError
from cadence.runtime.addresses import AddressError
from cadence.runtime.engine import EngineError, NotFound, PastStart
from cadence.runtime.migrations import SchemaError
from cadence.runtime.people import PeopleError
from cadence.runtime.planner import PlanError
from cadence.runtime.store import StoreError
from cadence.service.application import CampaignInvalid
from cadence.service.credentials import CredentialError

log = logging.getLogger("cadence.server")
MEDIA_TYPE = "application/problem+json"

# The most specific class first: a refusal's kind decides its status.
_KINDS: list[tuple[type[BaseException], int, str]] = [
    (NotFound, 404, "not-found"),
    (CampaignInvalid, 422, "campaign-invalid"),
    (PastStart, 422, "start-in-the-past"),
    (PlanError, 422, "invalid-input"),
    (PeopleError, 422, "invalid-input"),
    (AddressError, 422, "invalid-input"),
    (CredentialError, 422, "invalid-input"),
    (IRError, 422, "invalid-input"),
    (EngineError, 409, "refused"),
    (StoreError, 503, "database-unavailable"),
    (SchemaError, 503, "database-unavailable"),
    (CadenceError, 422, "invalid-input"),
]
_TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    413: "Content too large",
    415: "Unsupported media type",
    422: "Unprocessable content",
    500: "Internal server error",
    503: "Service unavailable",
}


class Problem(Exception):
    """A problem the web layer itself finds (no credential, a body too large…)."""

    def __init__(self, status: int, kind: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.extra = status, kind, detail, extra


def problem_response(
    request: Request, status: int, kind: str, detail: str, **extra: Any
) -> JSONResponse:
    body = {
        "type": f"urn:cadence:problem:{kind}",
        "title": _TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
        **extra,
    }
    headers = {"WWW-Authenticate": 'Bearer realm="cadence"'} if status == 401 else {}
    if body["request_id"]:
        # Said here too: a 500 is answered outside the middleware that adds it.
        headers["X-Request-ID"] = body["request_id"]
    return JSONResponse(body, status_code=status, media_type=MEDIA_TYPE, headers=headers)


def install(app: FastAPI) -> None:
    """Every error a request can meet, as a problem."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, error: Problem) -> JSONResponse:
        return problem_response(request, error.status, error.kind, error.detail, **error.extra)

    @app.exception_handler(CadenceError)
    async def _refused(request: Request, error: CadenceError) -> JSONResponse:
        status, kind = next((s, k) for cls, s, k in _KINDS if isinstance(error, cls))
        extra: dict[str, Any] = {}
        if isinstance(error, CampaignInvalid):
            extra["diagnostics"] = error.diagnostics
        return problem_response(request, status, kind, str(error), **extra)

    @app.exception_handler(DataError)
    async def _refused_value(request: Request, error: DataError) -> JSONResponse:
        # A value the database cannot store (PostgreSQL: a NUL in a text): the
        # transaction was rolled back, nothing changed.
        reason = str(error.orig).splitlines()[0] if error.orig else "invalid value"
        return problem_response(
            request, 422, "invalid-input", f"the database refused a value: {reason}"
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, error: RequestValidationError) -> JSONResponse:
        errors = [_field_error(found) for found in error.errors()]
        if any(found["type"] == "json_invalid" for found in error.errors()):
            return problem_response(request, 400, "malformed-json", "the body is not valid JSON")
        first = errors[0] if errors else {"where": "", "message": "invalid request"}
        detail = f"{first['where']}: {first['message']}" if first["where"] else first["message"]
        return problem_response(request, 422, "invalid-input", detail, errors=errors)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, error: HTTPException) -> JSONResponse:
        detail = error.detail if isinstance(error.detail, str) else _TITLES.get(error.status_code)
        kind = {404: "not-found", 405: "method-not-allowed", 413: "too-large"}.get(
            error.status_code, "http"
        )
        return problem_response(request, error.status_code, kind, str(detail))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, error: Exception) -> JSONResponse:
        request_id = getattr(request.state, "request_id", None)
        log.exception("request %s %s %s failed", request_id, request.method, request.url.path)
        return problem_response(
            request, 500, "internal", f"the server failed; its log names request {request_id}"
        )


def _field_error(found: Any) -> dict[str, str]:
    where = ".".join(str(part) for part in found.get("loc", ()) if part != "body")
    return {"where": where, "message": str(found.get("msg", "invalid")), "type": found.get("type")}
