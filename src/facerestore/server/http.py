"""HTTP plumbing: JSON errors, the upload size limit, the host and origin checks, API keys, and headers that
keep the page local."""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
from collections.abc import Collection
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("facerestore.server")
PUBLIC_PATHS = ("/v1/health", "/v1/ready", "/v1/openapi.json")  # open even when API keys are set
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
OWN_SITE = ("same-origin", "none")  # Sec-Fetch-Site of the server's own page, and of a typed address
CLOSE = (b"connection", b"close")
# Nothing on the page may load from, or send to, anywhere but this server.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)


class ApiError(Exception):
    """An error answered as ``{"error": message}`` with its status code."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    one_line = " ".join(message.split())
    return JSONResponse({"error": one_line}, status_code=status, headers=headers)


async def handle_api_error(_: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.message, error.headers)


async def handle_http_exception(_: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    headers = dict(error.headers or {})
    message = str(error.detail)
    if error.status_code == 405:
        message = f"{message}: this path takes {headers.get('Allow', 'another method')}"
    return error_response(error.status_code, message, headers)


async def handle_client_gone(request: Request, error: Exception) -> Response:
    """A client that hangs up mid-upload is routine: one quiet line, and nobody is left to answer."""
    log.info("the client hung up during %s %s", request.method, request.url.path)
    return error_response(400, "the client disconnected")


async def handle_unexpected(request: Request, error: Exception) -> Response:
    log.error("internal error on %s %s", request.method, request.url.path, exc_info=error)
    return error_response(500, "internal error (details are in the server's log)")


async def _send_json(send: Send, status: int, body: dict[str, str], headers: dict[str, str]) -> None:
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    raw += [(name.lower().encode(), value.encode()) for name, value in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return headers.get("content-length", "0") != "0" or "transfer-encoding" in headers


class CloseUnreadBody:
    """An answer sent before the whole request body has arrived (an error, mostly) closes the connection:
    otherwise the server would go on reading, and throwing away, the rest of the upload."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        complete = False

        async def watching_receive() -> Message:
            nonlocal complete
            message = await receive()
            complete = complete or not message.get("more_body", False)
            return message

        async def closing_send(message: Message) -> None:
            headers = list(message.get("headers", []))
            if message["type"] == "http.response.start" and not complete and CLOSE not in headers:
                message = {**message, "headers": [*headers, CLOSE]}
            await send(message)

        await self.app(scope, watching_receive, closing_send)


class BodySizeLimit:
    """413 for a body over the limit: at once from Content-Length, else while it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    def _message(self) -> str:
        return f"the upload is larger than this server's limit of {self.max_bytes / (1 << 20):g} MB"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _send_json(send, 413, {"error": self._message()}, {"connection": "close"})
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise ApiError(413, self._message())
            return message

        await self.app(scope, counting_receive, send)


def _host_name(host: str) -> str:
    """``example.org:8000`` -> ``example.org``; ``[::1]:8000`` -> ``::1``."""
    if host.startswith("["):
        return host[1:].partition("]")[0].lower()
    return host.rpartition(":")[0].lower().rstrip(".") if ":" in host else host.lower().rstrip(".")


def _is_ip_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """Answers only requests addressed to one of the server's names, so that a web page elsewhere cannot
    reach it by DNS rebinding (an address typed as digits cannot be rebound), and refuses a state-changing
    request from another site (a cross-site form post) unless CORS allows its origin."""

    def __init__(self, app: ASGIApp, names: Collection[str], cors_origins: Collection[str]) -> None:
        self.app = app
        self.names = {*LOOPBACK_NAMES, *(_host_name(name) for name in names)}
        self.cors_origins = set(cors_origins)

    def _known_host(self, host: str | None) -> bool:
        if host is None:  # HTTP/1.0 without Host: not a browser, so not rebinding
            return True
        name = _host_name(host)
        return name in self.names or _is_ip_address(name)

    def _cross_site(self, headers: Headers) -> bool:
        origin = headers.get("origin")
        if origin in self.cors_origins:
            return False
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None:
            return fetch_site not in OWN_SITE
        return origin is not None and urlsplit(origin).netloc.lower() != headers.get("host", "").lower()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        host = headers.get("host")
        if not self._known_host(host):
            name = _host_name(str(host))[:80]
            message = f"unknown host '{name}': this server answers only to its own names"
            await _send_json(send, 400, {"error": message}, {})
        elif scope["method"] not in SAFE_METHODS and self._cross_site(headers):
            message = "cross-site request refused: this server takes them only from the origins CORS allows"
            await _send_json(send, 403, {"error": message}, {})
        else:
            await self.app(scope, receive, send)


class JsonCORSMiddleware(CORSMiddleware):
    """Starlette's CORS, with a refused preflight answered in JSON like every other error."""

    def preflight_response(self, request_headers: Headers) -> Response:
        response = super().preflight_response(request_headers)
        if response.status_code < 400:
            return response
        refused = bytes(response.body).decode().removeprefix("Disallowed CORS ")
        headers = {name: value for name, value in response.headers.items() if not name.startswith("content-")}
        return error_response(response.status_code, f"CORS preflight refused: disallowed {refused}", headers)


class ApiKeyCheck:
    """Bearer tokens for /v1 (except health, readiness and the description) when keys are configured."""

    def __init__(self, app: ASGIApp, keys: tuple[str, ...]) -> None:
        self.app, self.keys = app, tuple(key.encode() for key in keys)

    def _allowed(self, scope: Scope) -> bool:
        path: str = scope["path"]
        if (
            not self.keys
            or not path.startswith("/v1/")
            or path in PUBLIC_PATHS
            or scope["method"] == "OPTIONS"
        ):
            return True
        scheme, _, token = Headers(scope=scope).get("authorization", "").partition(" ")
        offered = token.strip().encode()
        return scheme.lower() == "bearer" and any(hmac.compare_digest(offered, key) for key in self.keys)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self._allowed(scope):
            message = "missing or wrong API key: send the header 'Authorization: Bearer <key>'"
            await _send_json(send, 401, {"error": message}, {"www-authenticate": "Bearer"})
            return
        await self.app(scope, receive, send)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                ]
                if scope["path"].startswith("/v1/"):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
