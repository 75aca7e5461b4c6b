"""Replicate's HTTP rules: one client, the retry policy per status class, JSON bodies.

The retry policy is documented in ``replicate``'s module docstring; this module holds it so
the adapter itself reads as the prediction's lifecycle (create, poll, download, cancel).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx
import trio

from imagen_actors.backends.replicate_protocol import (
    ReplicateConfig,
    parse_retry_after,
    problem_detail,
)
from imagen_actors.core.backoff import Backoff
from imagen_actors.core.errors import GenerationError


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def image_mime(response: httpx.Response, url: str) -> str:
    """The response's image type, else the URL's suffix, else PNG (what we ask for)."""
    content_type = str(response.headers.get("Content-Type", "")).split(";")[0].strip().lower()
    if content_type.startswith("image/"):
        return content_type
    suffix = urlsplit(url).path.rsplit(".", 1)[-1].lower()
    return {"jpg": "image/jpeg", "jpeg": "image/jpeg", "webp": "image/webp"}.get(
        suffix, "image/png"
    )


class ReplicateHttp:
    """The adapter's one ``httpx.AsyncClient`` (opened lazily, closed by ``aclose``)."""

    def __init__(self, cfg: ReplicateConfig, *, token_rejected: str, api_host: str) -> None:
        self._cfg = cfg
        self._api_host = api_host
        self._token_rejected = token_rejected
        self._backoff = Backoff(base_s=cfg.backoff_s, cap_s=max(cfg.backoff_s, cfg.max_backoff_s))
        self._client: httpx.AsyncClient | None = None

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._cfg.http_timeout_s)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()

    async def request(
        self,
        method: str,
        url: str,
        *,
        token: str,
        what: str,
        json: Any = None,
        extra_headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        http_timeout_s: float | None = None,
        allow: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """The response, after the retries above; statuses in ``allow`` are returned too."""
        headers = bearer(token)
        headers.update(extra_headers or {})
        rate_limited = 0
        server_errors = 0
        transport_errors = 0
        while True:
            try:
                response = await self.client.request(
                    method,
                    url,
                    json=json,
                    headers=headers,
                    timeout=self._cfg.http_timeout_s if http_timeout_s is None else http_timeout_s,
                )
            except httpx.HTTPError as exc:
                sent_maybe = not isinstance(
                    exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout
                )
                if transport_errors or (sent_maybe and not idempotent):
                    raise GenerationError(
                        f"Replicate {what}: {type(exc).__name__}: {str(exc) or 'no detail'}",
                        error_class="dependency",
                    ) from exc
                transport_errors += 1
                await trio.sleep(self._backoff.delay_s(transport_errors))
                continue
            status = response.status_code
            if status < 400 or status in allow:
                return response
            if status in (401, 403):
                raise GenerationError(
                    f"{self._token_rejected} (HTTP {status} on {what}: {problem_detail(response)})",
                    error_class="configuration",
                )
            if status == 429:
                if rate_limited >= self._cfg.max_rate_limit_retries:
                    raise GenerationError(
                        f"Replicate {what}: rate limited (429) after {rate_limited} retries: "
                        f"{problem_detail(response)}",
                        error_class="dependency",
                    )
                rate_limited += 1
                await trio.sleep(self._rate_limit_delay(response, rate_limited))
                continue
            if status >= 500:
                if server_errors >= 1:
                    raise GenerationError(
                        f"Replicate {what}: HTTP {status} twice: {problem_detail(response)}",
                        error_class="dependency",
                    )
                server_errors += 1
                await trio.sleep(self._backoff.delay_s(server_errors))
                continue
            raise GenerationError(
                f"Replicate {what} refused (HTTP {status}): {problem_detail(response)}"
                + (" (check the backend's model name)" if status == 404 else ""),
                # 404: the model (or version) does not exist: the instance's configuration.
                error_class="configuration" if status == 404 else "permanent",
            )

    async def json_object(self, response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError as exc:
            raise GenerationError(
                f"Replicate answered HTTP {response.status_code} with a non-JSON body",
                error_class="transient",
            ) from exc
        if not isinstance(body, dict):
            raise GenerationError(
                "Replicate answered with a JSON body that is not an object", error_class="transient"
            )
        return body

    async def download(self, token: str, prediction: Mapping[str, Any]) -> tuple[bytes, str]:
        """The first output file, fetched at once (outputs expire); one more try on any
        failure, then a dependency fault (a new run makes a new output)."""
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str) or not url:
            raise GenerationError(
                f"Replicate prediction {prediction.get('id')} succeeded without an output URL"
                f"{' (data removed)' if prediction.get('data_removed') else ''}",
                error_class="transient",
            )
        headers = bearer(token) if self._send_token_to(url) else {}
        last = ""
        for _attempt in range(2):
            try:
                response = await self.client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                return response.content, image_mime(response, url)
            last = f"HTTP {response.status_code}"
        raise GenerationError(
            f"downloading Replicate output {url} failed twice ({last})", error_class="dependency"
        )

    def _send_token_to(self, url: str) -> bool:
        """Only to the API host and Replicate's file CDN, never to a third party."""
        host = (urlsplit(url).hostname or "").lower()
        return (
            host == self._api_host
            or host == "replicate.delivery"
            or host.endswith(".replicate.delivery")
        )

    def _rate_limit_delay(self, response: httpx.Response, attempt: int) -> float:
        hinted = parse_retry_after(response.headers.get("Retry-After"))
        if hinted is not None:
            return min(hinted, self._cfg.max_backoff_s)
        return self._backoff.delay_s(attempt)
