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

Prefer: wait, then poll. ``Prefer: wait=N`` (``prefer_wait_s``, default 5, at most 60, 0 =
off) is honoured only on create: the OpenAPI spec lists the header on the create operations
alone, and Replicate's own client sends it only there and waits by polling ``GET``. So the
create carries it, a model that finishes within N s comes back done (no poll, no poll
interval of latency), and anything slower comes back ``starting``/``processing`` and is
polled. The price: while the create is held the id is unknown, so for up to N s a cancel
cannot name the prediction and a worker that dies leaves nothing to resume. N is kept short
for that reason; ``Cancel-After`` bounds what runs unnamed.

Deadline: ``Cancel-After: <timeout_s>s`` on every create (at least 5 s), the same
``timeout_s`` (default 60 s for schnell models, 120 s otherwise) after which ``generate``
gives up and cancels. It is measured from creation, so it also bounds a prediction whose
worker died, and one resumed by the next attempt.

Resume. The adapter awaits ``created(id)`` as soon as the create answers, before waiting on
the prediction; the Executor records PredictionCreated there. A later attempt of the same job
(the worker died: ``requeue_own`` at restart, or the Reaper after the lease) gets that id in
``GenerationRequest.resume`` and ``GET``s it instead of POSTing: still running -> poll on;
``succeeded`` -> download at once; ``failed``/``canceled``/``aborted``, 404, output removed,
or recorded more than RESUME_MAX_AGE_S (50 min; Replicate drops API predictions' data after
about an hour) ago -> a new prediction, as any retry would.

Cancellation: once a prediction id is known, leaving ``generate`` by any exception other
than a terminal status (trio.Cancelled: a cancel_job, a shutdown past its grace; our own
timeout; an HTTP error while polling; recording PredictionCreated failing) sends
``POST /v1/predictions/{id}/cancel`` inside a shielded ``move_on_after(cancel_timeout_s)``
and re-raises. So a graceful stop leaves nothing to resume; resuming is for a worker that
died without the chance to cancel (kill -9, OOM, a lost host).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import trio

from imagen_actors.backends import replicate_pricing as pricing
from imagen_actors.backends.base import (
    BackendStatus,
    CreatedCallback,
    GenerationRequest,
    GenerationResult,
    ProgressCallback,
    adapter_config,
)
from imagen_actors.backends.replicate_http import ReplicateHttp, bearer
from imagen_actors.backends.replicate_protocol import (
    HEX_VERSION,
    MODEL_REF,
    RESUME_MAX_AGE_S,
    TERMINAL,
    ReplicateConfig,
    classify_failure,
    default_timeout_s,
    nearest_aspect_ratio,
    problem_detail,
    progress_from_logs,
)
from imagen_actors.config.settings import secret_from_env
from imagen_actors.core.errors import ConfigError, GenerationError
from imagen_actors.core.fold import ExternalRun

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
        if match is not None and match["version"] is None:
            self._create_url = f"{self._api}/models/{match['owner']}/{match['name']}/predictions"
            self._version: str | None = None
        else:
            self._create_url = f"{self._api}/predictions"
            self._version = cfg.model
        self._timeout = cfg.timeout_s if cfg.timeout_s is not None else default_timeout_s(cfg.model)
        self._wire = ReplicateHttp(
            cfg, token_rejected=self._token_rejected(), api_host=urlsplit(self._api).hostname or ""
        )
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
        self,
        request: GenerationRequest,
        progress: ProgressCallback,
        *,
        created: CreatedCallback | None = None,
    ) -> GenerationResult:
        token = self._token()
        started = time.perf_counter()
        body = self.build_input(request)
        with trio.move_on_after(self._timeout) as deadline:
            prediction, image, mime = await self._run(token, body, progress, request, created)
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
                "resumed": request.resume is not None and request.resume.id == prediction.get("id"),
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
        self,
        token: str,
        body: dict[str, Any],
        progress: ProgressCallback,
        request: GenerationRequest,
        created: CreatedCallback | None,
    ) -> tuple[dict[str, Any], bytes, str]:
        resumed = None if request.resume is None else await self._resume(token, request.resume)
        prediction = resumed if resumed is not None else await self._create(token, body)
        prediction_id = str(prediction["id"])
        total = int(body.get("num_inference_steps") or 0)
        try:
            if resumed is None and created is not None:
                await created(prediction_id)
            while prediction.get("status") not in TERMINAL:
                if (reached := progress_from_logs(prediction, total)) is not None:
                    progress(*reached)
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
        image, mime = await self._wire.download(token, prediction)
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

    async def _resume(self, token: str, run: ExternalRun) -> dict[str, Any] | None:
        """The recorded prediction, to poll on (or download, if it succeeded); None when a
        new one is needed: too old, gone, or ended without a usable output."""
        age_s = (datetime.now(UTC) - run.created_at).total_seconds()
        why = f"older than {RESUME_MAX_AGE_S // 60} min" if age_s > RESUME_MAX_AGE_S else None
        prediction: dict[str, Any] = {}
        if why is None:
            response = await self._wire.request(
                "GET",
                f"{self._api}/predictions/{run.id}",
                token=token,
                what="resume prediction",
                allow=frozenset({404}),
            )
            if response.status_code == 404:
                why = "not found"
            else:
                prediction = await self._wire.json_object(response)
                status = prediction.get("status")
                if status in TERMINAL and status != "succeeded":
                    why = f"it ended {status}"
                elif status == "succeeded" and (
                    prediction.get("data_removed") or not prediction.get("output")
                ):
                    why = "its output was removed"
        if why is not None:
            log.info("%s: not resuming prediction %s (%s); creating one", self.name, run.id, why)
            return None
        log.info("%s: resuming prediction %s (%s)", self.name, run.id, prediction.get("status"))
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

    # -- helpers ----------------------------------------------------------------------

    def _token(self) -> str:
        return secret_from_env(
            self._cfg.api_token_env, key_path=f"backends.{self.name}.api_token_env"
        )

    def _token_rejected(self) -> str:
        return f"Replicate rejected the token in ${self._cfg.api_token_env}"


def build(name: str, block: dict[str, Any]) -> ReplicateBackend:
    return ReplicateBackend(name, adapter_config(block, ReplicateConfig, instance=name))
