"""What every request gets before it reaches a route: an id (answered in
``X-Request-ID``, logged with any failure), a limit on the size of its body,
counted as it arrives (a client may lie in Content-Length or send none), and
on its answer the headers that keep a browser from being tricked: no framing,
no sniffing, scripts and forms from this site only."""

from __future__ import annotations

import json
import secrets

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DEFAULT_MAX_BODY = 16 * 1024 * 1024  # an enroll of ~100,000 people as CSV
SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),
]  # fmt: skip


class _TooLarge(HTTPException):
    """Raised while the body is read: an HTTP error (413), so that whatever
    reads the body answers with it as a problem."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the body is larger than {limit} bytes, the most this server takes")


class RequestLimits:
    """ASGI middleware: request ids and the body limit."""

    def __init__(self, app: ASGIApp, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = secrets.token_hex(8)
        scope.setdefault("state", {})["request_id"] = request_id
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await self._refuse(scope, send, request_id)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    raise _TooLarge(self.max_body)
            return message

        async def tagged(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                if not any(name.lower() == b"x-request-id" for name, _ in headers):
                    headers.append((b"x-request-id", request_id.encode()))
                headers.extend(SECURITY_HEADERS)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, counted, tagged)
        except _TooLarge:
            if not started:
                await self._refuse(scope, send, request_id)

    async def _refuse(self, scope: Scope, send: Send, request_id: str) -> None:
        body = json.dumps({
            "type": "urn:cadence:problem:too-large",
            "title": "Content too large",
            "status": 413,
            "detail": f"the body is larger than {self.max_body} bytes, the most this server takes",
            "instance": scope.get("path", ""),
            "request_id": request_id,
        }).encode()  # fmt: skip
        await send({
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/problem+json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        })  # fmt: skip
        await send({"type": "http.response.body", "body": body})
