"""Replicate adapter: create a prediction, poll it, download the image at once.

Wire format: docs reference protocols.md §2. Refs ``owner/name`` create through
``POST /v1/models/{owner}/{name}/predictions``; ``owner/name:version`` and bare 64-hex
version ids through ``POST /v1/predictions`` with ``{"version": ...}``. Then
``GET /v1/predictions/{id}`` every ``poll_interval_s`` until a terminal status.

Retries inside one ``generate`` (the job-level retry is the supervisor's business):

- 429: up to ``max_rate_limit_retries`` (3) more tries, waiting ``Retry-After`` when the
  response carries one (seconds or an HTTP date, capped at ``max_backoff_s``), otherwise
  ``core.backoff`` (base ``backoff_s``, cap ``max_backoff_s``, full jitter). POST-create
  included: Replicate's own client never retries POST, so we do it here; a 429 means
  nothing was created.
- 5xx: one more try (up to ``backoff_s`` later, jittered), then a transient
  GenerationError. This includes POST-create: a 5xx normally means nothing was created;
  a gateway 502/504 that hides a created prediction is bounded by ``Cancel-After``.
- Transport errors: a connect failure (nothing sent) gets one more try; a timeout or a
  dropped connection after a POST-create was sent is *not* retried (it may have created a
  paid prediction) and surfaces as a transient GenerationError. GETs are retried once.
- 401/403: permanent, naming the variable that holds the token. Other 4xx: permanent, with
  Replicate's ``detail``.
- The output download (``output`` is a URL or a list of URLs; the first is taken) happens
  immediately after ``succeeded`` because outputs expire; any failure is retried once, then
  is transient (a new run makes a new output).

A prediction that ended ``failed`` raises GenerationError with Replicate's ``error`` text.
Classification rule: *transient* when the text matches one of TRANSIENT_FAILURE_PATTERNS
(timeouts, CUDA/GPU out-of-memory, CUDA errors, connection resets, "temporarily
unavailable", internal server errors), *permanent* otherwise (NSFW filter, invalid input,
unknown). ``canceled``/``aborted`` without us asking (Cancel-After deadline, web UI) are
transient.

Cancellation: once a prediction id is known, leaving ``generate`` by any exception other
than a terminal status (trio.Cancelled, our own timeout, an HTTP error while polling) sends
``POST /v1/predictions/{id}/cancel`` inside a shielded ``move_on_after(cancel_timeout_s)``
and re-raises. ``Cancel-After`` on the create request is a server-side backstop for the one
window we cannot cover (cancelled while the create POST is in flight, id unknown).

``Prefer: wait=N`` is supported by the API (§2.1) but off by default (``prefer_wait_s: 0``):
while the create request is held, a cancellation cannot name the prediction to cancel. Set
``prefer_wait_s`` (1..60) to trade that for lower latency on fast models.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import trio

from imagen_actors.backends import replicate_pricing as pricing
from imagen_actors.backends.base import (
    BackendStatus,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
)
from imagen_actors.backends.replicate_http import ReplicateHttp, bearer, image_mime
from imagen_actors.backends.replicate_protocol import (
    HEX_VERSION,
    MODEL_REF,
    TERMINAL,
    TQDM_PROGRESS,
    ReplicateConfig,
    classify_failure,
    default_timeout_s,
    nearest_aspect_ratio,
    problem_detail,
)
from imagen_actors.config.settings import secret_from_env
from imagen_actors.core.errors import ConfigError, GenerationError

log = logging.getLogger("imagen_actors.backends.replicate")

# Input keys the job's own columns decide; opts setting them would misrecord the image.
RECORDED_FIELDS: Final = frozenset({"prompt", "seed"})


class ReplicateBackend:
    type = "replicate"

    def __init__(self, name: str, cfg: ReplicateConfig) -> None:
        self.name = name
        self._cfg = cfg
        match = MODEL_REF.match(cfg.model)
        if match is None and not HEX_VERSION.match(cfg.model):
            raise ConfigError(
                f"backends.{name}.model {cfg.model!r} is not a Replicate model ref; "
                "use owner/name, owner/name:<version> or a 64-hex version id"
            )
        if not 0 <= cfg.prefer_wait_s <= 60:
            raise ConfigError(f"backends.{name}.prefer_wait_s must be 0 (off) or 1..60")
        for key in ("poll_interval_s", "http_timeout_s", "cancel_timeout_s"):
            if getattr(cfg, key) <= 0:
                raise ConfigError(f"backends.{name}.{key} must be > 0")
        if clash := sorted(RECORDED_FIELDS & cfg.opts.keys()):
            key = clash[0]
            raise ConfigError(
                f"backends.{name}.opts.{key}: {key} comes from each job and is recorded with its "
                f"image; remove it from opts (set the job's {key} column instead)"
            )
        if cfg.timeout_s is not None and cfg.timeout_s <= 0:
            raise ConfigError(f"backends.{name}.timeout_s must be > 0")
        base = cfg.base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self._api = base + "/v1"
        self._api_host = urlsplit(self._api).hostname or ""
        if match is not None and match["version"] is None:
            self._create_url = f"{self._api}/models/{match['owner']}/{match['name']}/predictions"
            self._version: str | None = None
        else:
            self._create_url = f"{self._api}/predictions"
            self._version = cfg.model
        self._timeout = cfg.timeout_s if cfg.timeout_s is not None else default_timeout_s(cfg.model)
        self._wire = ReplicateHttp(cfg, token_rejected=self._token_rejected())
        if cfg.cost_usd_per_image is None and not pricing.is_priced(cfg.model):
            log.warning(
                "backends.%s: no price known for %s; cost estimates will be 0.0 "
                "(set cost_usd_per_image)",
                name,
                cfg.model,
            )

    # -- public -------------------------------------------------------------------------

    def build_input(self, request: GenerationRequest) -> dict[str, Any]:
        """The prediction ``input``: mapped fields, then config opts, then request opts.

        Opts may override how the image is made (``output_format``, ``aspect_ratio``, ...) but
        not the prompt or seed: those are recorded with the image and must be what was drawn.
        """
        if clash := sorted(RECORDED_FIELDS & request.opts.keys()):
            key = clash[0]
            raise GenerationError(
                f"opts.{key}: the job's opts may not set {key!r}; it comes from the job's own "
                f"{key} column and is recorded with the image (resubmit with {key} set there "
                f"and without opts.{key})",
                error_class="permanent",
            )
        body: dict[str, Any] = {
            "prompt": request.prompt,
            "seed": request.seed,
            "aspect_ratio": nearest_aspect_ratio(request.width, request.height),
            "output_format": "png",
        }
        steps = request.steps or self._cfg.default_steps
        if steps:
            body["num_inference_steps"] = steps
        body.update(self._cfg.opts)
        body.update(request.opts)
        return body

    async def generate(
        self, request: GenerationRequest, progress: ProgressCallback
    ) -> GenerationResult:
        token = self._token()
        started = time.perf_counter()
        body = self.build_input(request)
        with trio.move_on_after(self._timeout) as deadline:
            prediction, image, mime = await self._run(token, body, progress)
        if deadline.cancelled_caught:
            raise GenerationError(
                f"Replicate prediction on {self.name!r} did not finish within "
                f"{self._timeout:g}s (timeout_s); it was cancelled",
                error_class="transient",
            )
        images = int(body.get("num_outputs") or 1)
        per_image = self._cfg.cost_usd_per_image
        cost = (
            per_image * images
            if per_image is not None
            else pricing.estimate_cost(self._cfg.model, images)
        )
        metrics = prediction.get("metrics") or {}
        return GenerationResult(
            image=image,
            mime=mime,
            model=str(prediction.get("model") or self._cfg.model),
            seed=request.seed,
            latency_ms=int((time.perf_counter() - started) * 1000),
            cost_usd_estimate=cost,
            metadata={
                "prediction_id": prediction.get("id"),
                "model_ref": self._cfg.model,
                "aspect_ratio": body["aspect_ratio"],
                "steps": body.get("num_inference_steps"),
                "predict_time_s": metrics.get("predict_time"),
                "cost_priced": per_image is not None or pricing.is_priced(self._cfg.model),
                "web_url": (prediction.get("urls") or {}).get("web"),
            },
        )

    async def check(self) -> BackendStatus:
        """The token is set and accepted (GET /predictions), and the model exists
        (GET /models/{owner}/{name}; a pinned version is checked when it first runs)."""
        try:
            token = self._token()
        except ConfigError:
            return BackendStatus.misconfigured(f"not configured (set {self._cfg.api_token_env})")
        urls = [f"{self._api}/predictions"]
        if (match := MODEL_REF.match(self._cfg.model)) is not None:
            urls.append(f"{self._api}/models/{match['owner']}/{match['name']}")
        for url in urls:
            try:
                with trio.fail_after(min(10.0, self._cfg.http_timeout_s)):
                    response = await self._wire.client.get(url, headers=bearer(token))
            except (httpx.HTTPError, trio.TooSlowError) as exc:
                return BackendStatus.down(f"unreachable ({type(exc).__name__}: {exc})")
            if response.status_code in (401, 403):
                return BackendStatus.misconfigured(self._token_rejected())
            if response.status_code == 404 and "/models/" in url:
                return BackendStatus.misconfigured(
                    f"model {self._cfg.model!r} not found on Replicate; check "
                    f"backends.{self.name}.model"
                )
            if response.status_code >= 400:
                detail = f"unreachable (HTTP {response.status_code}: {problem_detail(response)})"
                if response.status_code >= 500 or response.status_code == 429:
                    return BackendStatus.down(detail)
                return BackendStatus.misconfigured(detail)
        return BackendStatus(True, "ok")

    async def aclose(self) -> None:
        await self._wire.aclose()

    # -- the run ------------------------------------------------------------------------

    async def _run(
        self, token: str, body: dict[str, Any], progress: ProgressCallback
    ) -> tuple[dict[str, Any], bytes, str]:
        prediction = await self._create(token, body)
        prediction_id = str(prediction["id"])
        total = int(body.get("num_inference_steps") or 0)
        try:
            while prediction.get("status") not in TERMINAL:
                self._report(prediction, total, progress)
                await trio.sleep(self._cfg.poll_interval_s)
                prediction = await self._wire.json_object(
                    await self._wire.request(
                        "GET",
                        f"{self._api}/predictions/{prediction_id}",
                        token=token,
                        what="poll prediction",
                    )
                )
        except BaseException:
            await self._cancel(token, prediction_id)
            raise
        status = prediction.get("status")
        if status == "failed":
            error = prediction.get("error")
            raise GenerationError(
                f"Replicate prediction {prediction_id} failed: {error or '(no error text)'}",
                error_class=classify_failure(None if error is None else str(error)),
            )
        if status != "succeeded":
            raise GenerationError(
                f"Replicate prediction {prediction_id} ended {status}"
                f"{': ' + str(prediction['error']) if prediction.get('error') else ''}",
                error_class="transient",
            )
        if total:
            progress(total, total)
        image, mime = await self._download(token, prediction)
        return prediction, image, mime

    async def _create(self, token: str, body: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {"input": body}
        if self._version is not None:
            payload["version"] = self._version
        headers = {"Cancel-After": f"{max(5, math.ceil(self._timeout))}s"}
        if self._cfg.prefer_wait_s > 0:
            headers["Prefer"] = f"wait={min(60, self._cfg.prefer_wait_s)}"
        response = await self._wire.request(
            "POST",
            self._create_url,
            token=token,
            what="create prediction",
            json=payload,
            extra_headers=headers,
            idempotent=False,
            # A held "Prefer: wait=N" request must outlive N.
            http_timeout_s=max(self._cfg.http_timeout_s, self._cfg.prefer_wait_s + 10.0),
        )
        prediction = await self._wire.json_object(response)
        if not prediction.get("id"):
            raise GenerationError(
                "Replicate created a prediction without an id", error_class="transient"
            )
        return prediction

    async def _cancel(self, token: str, prediction_id: str) -> None:
        """Best effort, shielded, bounded: never masks the exception being raised."""
        with (
            trio.CancelScope(shield=True),
            trio.move_on_after(self._cfg.cancel_timeout_s),
            contextlib.suppress(httpx.HTTPError),
        ):
            await self._wire.client.post(
                f"{self._api}/predictions/{prediction_id}/cancel", headers=bearer(token)
            )

    async def _download(self, token: str, prediction: dict[str, Any]) -> tuple[bytes, str]:
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
                response = await self._wire.client.get(url, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if response.status_code == 200:
                return response.content, image_mime(response, url)
            last = f"HTTP {response.status_code}"
        raise GenerationError(
            f"downloading Replicate output {url} failed twice ({last})", error_class="dependency"
        )

    # -- helpers ----------------------------------------------------------------------

    def _token(self) -> str:
        return secret_from_env(
            self._cfg.api_token_env, key_path=f"backends.{self.name}.api_token_env"
        )

    def _token_rejected(self) -> str:
        return f"Replicate rejected the token in ${self._cfg.api_token_env}"

    def _send_token_to(self, url: str) -> bool:
        """Only to the API host and Replicate's file CDN, never to a third party."""
        host = (urlsplit(url).hostname or "").lower()
        return (
            host == self._api_host
            or host == "replicate.delivery"
            or host.endswith(".replicate.delivery")
        )

    @staticmethod
    def _report(prediction: Mapping[str, Any], total: int, progress: ProgressCallback) -> None:
        """Progress from the last tqdm ``n/m [`` line in the logs, when there is one."""
        logs = prediction.get("logs")
        if not isinstance(logs, str):
            return
        found = TQDM_PROGRESS.findall(logs)
        if found:
            step, steps = (int(x) for x in found[-1])
            if steps:
                progress(min(step, steps), steps)
        elif total:
            progress(0, total)


def build(name: str, block: dict[str, Any]) -> ReplicateBackend:
    return ReplicateBackend(name, adapter_config(block, ReplicateConfig, instance=name))
