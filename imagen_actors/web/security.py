"""Who may use the dashboard: the bind rule, the token, CSRF and same-origin POSTs.

A pure ASGI middleware in front of the Starlette app. With a token configured every request
must carry it (``Authorization: Bearer``, or the cookie set after one ``?token=`` visit);
every POST must come from our own origin and carry the session's CSRF token, which the
routes check against the form (``check_csrf``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import attrs
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from imagen_actors.core.errors import UsageError

AUTH_COOKIE: Final = "imagen_dash_auth"
SESSION_COOKIE: Final = "imagen_dash_session"

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# No inline script or style, no third-party origin, never framed.
HEADERS: Final = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "same-origin",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


@attrs.frozen
class Bind:
    host: str
    port: int

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def hypercorn(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) into a Bind, or a UsageError naming the fix."""
    host, sep, port = text.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"--bind {text!r} is not HOST:PORT; give e.g. 127.0.0.1:8080")
    return Bind(host, int(port))


def require_token_for(bind: Bind, token_env: str | None) -> None:
    """Refuse a non-loopback address without --token-env."""
    if not bind.loopback and token_env is None:
        raise UsageError(
            f"--bind {bind.host} is not a loopback address: anyone who can reach it could "
            "cancel jobs. Give --token-env NAME (an environment variable holding a long random "
            "token), or bind 127.0.0.1 and reach it through an SSH tunnel or a TLS reverse proxy"
        )


def _digest(key: bytes, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest()


def check_csrf(request: Request, given: object) -> bool:
    """Does the form's ``csrf`` field match this session's token?"""
    expected: str = request.state.csrf
    return isinstance(given, str) and hmac.compare_digest(given.encode(), expected.encode())


def _same_origin(request: Request) -> bool:
    host = request.headers.get("host", "")
    source = request.headers.get("origin") or request.headers.get("referer")
    return bool(source) and bool(host) and urlsplit(source).netloc == host


class Guard:
    """The middleware: authenticates, issues the session cookie, rejects foreign POSTs."""

    def __init__(self, app: ASGIApp, *, token: str | None, secret: bytes | None = None) -> None:
        self.app = app
        self.token = token
        self.secret = secret or secrets.token_bytes(32)
        self._auth_value = None if token is None else _digest(token.encode(), "dashboard-auth")

    def _authenticated(self, request: Request) -> bool:
        if self.token is None or self._auth_value is None:
            return True
        bearer = request.headers.get("authorization", "")
        if bearer.startswith("Bearer ") and hmac.compare_digest(
            bearer.removeprefix("Bearer ").encode(), self.token.encode()
        ):
            return True
        cookie = request.cookies.get(AUTH_COOKIE, "")
        return hmac.compare_digest(cookie.encode(), self._auth_value.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        response = self._refusal(request)
        if response is None and self.token is not None and "token" in request.query_params:
            response = self._login(request)
        if response is not None:
            await self._headers_on(response)(scope, receive, send)
            return
        session = request.cookies.get(SESSION_COOKIE, "")
        fresh = len(session) < 32
        if fresh:
            session = secrets.token_urlsafe(32)
        scope.setdefault("state", {})["csrf"] = _digest(self.secret, session)

        async def with_headers(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers.setdefault(name, value)
                if fresh:
                    headers.append("set-cookie", _cookie(SESSION_COOKIE, session))
            await send(message)

        await self.app(scope, receive, with_headers)

    def _refusal(self, request: Request) -> Response | None:
        has_token_query = self.token is not None and "token" in request.query_params
        if not has_token_query and not self._authenticated(request):
            return PlainTextResponse(
                "401: this dashboard needs its token. Open it once as /?token=TOKEN (the value "
                "of the environment variable named by serve --token-env), or send "
                "'Authorization: Bearer TOKEN'.",
                status_code=401,
                headers={"www-authenticate": "Bearer"},
            )
        if request.method == "POST":
            if not _same_origin(request):
                return PlainTextResponse(
                    "403: a POST must come from this dashboard's own pages (its Origin or "
                    "Referer names another site, or none); use the buttons on the job page.",
                    status_code=403,
                )
            if len(request.cookies.get(SESSION_COOKIE, "")) < 32:
                return PlainTextResponse(
                    "403: no dashboard session; reload the page and try again.", status_code=403
                )
        return None

    def _login(self, request: Request) -> Response:
        assert self.token is not None and self._auth_value is not None
        given = request.query_params["token"]
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return PlainTextResponse(
                "401: wrong token (compare with the variable named by serve --token-env).",
                status_code=401,
            )
        rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
        target = request.url.path + (f"?{urlencode(rest)}" if rest else "")
        response = RedirectResponse(target, status_code=303)
        response.headers.append("set-cookie", _cookie(AUTH_COOKIE, self._auth_value))
        return response

    @staticmethod
    def _headers_on(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        return response


def _cookie(name: str, value: str) -> str:
    # Path=/ and SameSite=Strict: never sent on a request another site starts.
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"
