"""The Starlette app: pages, the image, live updates and the two actions."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from imagen_actors.cli.reports.replay import format_duration
from imagen_actors.core.errors import DatabaseError, JobNotFoundError, StorageError
from imagen_actors.db.gateway import Gateway
from imagen_actors.storage.base import ObjectStore
from imagen_actors.web import charts, data, live
from imagen_actors.web.security import Guard, check_csrf

# What an action's outcome says on the job page: a fixed text per key, never echoed input.
NOTES: Final = {
    "cancelled": "Cancelled.",
    "cancel-requested": "Cancel requested: the worker holding this job was told to stop it.",
    "already-ended": "The job had already ended: nothing to cancel.",
    "retried": "Retried: the job is pending again with a fresh attempt budget.",
    "not-retryable": "Only a failed or cancelled job can be retried.",
    "csrf": "The form was stale (no valid CSRF token): reload the page and try again.",
}


def _environment() -> Environment:
    env = Environment(
        loader=PackageLoader("imagen_actors.web", "templates"),
        autoescape=select_autoescape(["html"]),
    )
    env.filters["duration"] = format_duration
    env.filters["when"] = lambda v: "-" if v is None else v.strftime("%Y-%m-%d %H:%M:%S")
    env.filters["pretty"] = lambda v: json.dumps(v, indent=2, sort_keys=True, default=str)
    return env


class Dashboard:
    def __init__(self, gw: Gateway, store: ObjectStore, ticks: live.Ticks) -> None:
        self.gw = gw
        self.store = store
        self.ticks = ticks
        self.templates = _environment()

    def render(self, request: Request, name: str, status: int = 200, **context: Any) -> Response:
        html = self.templates.get_template(name).render(
            csrf=request.state.csrf, request=request, **context
        )
        return HTMLResponse(html, status_code=status)

    def not_found(self, request: Request, what: str) -> Response:
        return self.render(request, "error.html", 404, message=what)

    async def index(self, request: Request) -> Response:
        before = request.query_params.get("before")
        page = await data.overview(self.gw, int(before) if before and before.isdigit() else None)
        return self.render(
            request,
            "index.html",
            page=page,
            latency_charts=charts.latency_charts(page["latency"]),
            usage_charts=charts.usage_charts(page["usage"]),
        )

    async def job(self, request: Request) -> Response:
        job_id = _job_id(request)
        page = None if job_id is None else await data.job_page(self.gw, job_id)
        if page is None:
            return self.not_found(request, "No such job. Check the id (imagen.jobs.id).")
        note = NOTES.get(request.query_params.get("note", ""))
        return self.render(request, "job.html", page=page, note=note)

    async def image(self, request: Request) -> Response:
        job_id = _job_id(request)
        row = None if job_id is None else await self.gw.fetchrow("dash_job_image", job_id)
        if row is None:
            return self.not_found(request, "This job has no stored image.")
        if row["bucket"] != self.store.bucket:
            return self.not_found(
                request,
                f"The image is in bucket {row['bucket']}; this dashboard's storage "
                f"config reads bucket {self.store.bucket}: serve with the worker's config.",
            )
        try:
            # The key comes from imagen.images, never from the URL; the store refuses a key
            # that is absolute or climbs with '..' (storage.local.safe_relative).
            body = await self.store.get(row["storage_path"])
        except StorageError as exc:
            return self.not_found(request, f"The image could not be read: {exc}")
        if body is None:
            return self.not_found(request, "The image is missing from storage.")
        mime = row["mime"] if row["mime"] in ("image/png", "image/jpeg", "image/webp") else None
        return Response(body, media_type=mime or "application/octet-stream")

    async def events(self, request: Request) -> Response:
        raw = request.headers.get("last-event-id") or request.query_params.get("after", "")
        after = int(raw) if raw.isdigit() else await self.gw.fetchval("dash_last_event_id")
        job = _uuid(request.query_params.get("job", ""))
        return StreamingResponse(
            live.stream(self.gw, self.ticks, after, job),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    async def cancel(self, request: Request) -> Response:
        return await self._act(request, "cancel")

    async def retry(self, request: Request) -> Response:
        return await self._act(request, "retry")

    async def _act(self, request: Request, action: str) -> Response:
        job_id = _job_id(request)
        if job_id is None:
            return self.not_found(request, "No such job.")
        form = await request.form()
        if not check_csrf(request, form.get("csrf")):
            return _back(job_id, "csrf", status=403)
        try:
            if action == "cancel":
                status = await self.gw.cancel_job(job_id, "cancelled from the dashboard")
                note = {"cancelled": "cancelled", "running": "cancel-requested"}.get(
                    status, "already-ended"
                )
            else:
                await self.gw.retry_job(job_id)
                note = "retried"
        except JobNotFoundError:
            return self.not_found(request, "No such job.")
        except DatabaseError:
            # retry_job refuses a job that is not failed or cancelled (SQLSTATE 55000).
            note = "not-retryable"
        return _back(job_id, note)


def _back(job_id: uuid.UUID, note: str, *, status: int = 303) -> Response:
    if status != 303:
        return HTMLResponse(
            f'<p>{NOTES[note]}</p><p><a href="/jobs/{job_id}">back to the job</a></p>',
            status_code=status,
        )
    return RedirectResponse(f"/jobs/{job_id}?note={note}", status_code=303)


def _job_id(request: Request) -> uuid.UUID | None:
    return _uuid(request.path_params["job_id"])


def _uuid(raw: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(raw) if raw else None
    except ValueError:
        return None


def build_app(gw: Gateway, store: ObjectStore, ticks: live.Ticks, *, token: str | None) -> Guard:
    d = Dashboard(gw, store, ticks)
    static = Path(__file__).with_name("static")
    app = Starlette(
        routes=[
            Route("/", d.index),
            Route("/events", d.events),
            Route("/jobs/{job_id}", d.job),
            Route("/jobs/{job_id}/image", d.image),
            Route("/jobs/{job_id}/cancel", d.cancel, methods=["POST"]),
            Route("/jobs/{job_id}/retry", d.retry, methods=["POST"]),
            Mount("/static", StaticFiles(directory=static), name="static"),
        ]
    )
    return Guard(app, token=token)
