"""The dashboard over real loopback HTTP: Hypercorn's Trio worker, the Gateway inside it and a
real Postgres. (The browser test in tests/browser drives the same pages through Chromium.)"""

from __future__ import annotations

import hashlib
import uuid
from pathlib import Path

import httpx
import pytest
import trio

from imagen_actors.config.settings import Config
from imagen_actors.db.gateway import Gateway
from tests.support.jobs import insert_job
from tests.support.worker import running_worker, wait_terminal
from tests.web.conftest import dashboard

pytestmark = pytest.mark.db


def csrf_of(html: str) -> str:
    marker = 'name="csrf" value="'
    start = html.index(marker) + len(marker)
    return html[start : html.index('"', start)]


async def test_pages_show_the_queue_the_job_and_its_image(
    web_config: Config, gateway: Gateway
) -> None:
    async with running_worker(web_config) as (_handle, gw):
        job = await insert_job(gw, "a dashboard owl")
        await wait_terminal(gw, job)
    async with dashboard(web_config) as url, httpx.AsyncClient(base_url=url) as http:
        home = await http.get("/")
        assert home.status_code == 200
        assert str(job) in home.text and "a dashboard owl" in home.text
        assert "default-src 'self'" in home.headers["content-security-policy"]
        # Nothing of the database login is ever shown.
        assert str(web_config.database_url()) not in home.text

        page = await http.get(f"/jobs/{job}")
        assert page.status_code == 200
        assert "OK: " in page.text and "events chain and replay" in page.text
        for event in ("JobSubmitted", "JobClaimed", "GenerationSucceeded", "JobCompleted"):
            assert event in page.text
        assert "local_path" in page.text  # the sidecar metadata

        image = await http.get(f"/jobs/{job}/image")
        row = await gateway.fetchrow("dash_job_image", job)
        assert row is not None
        assert image.headers["content-type"] == "image/png"
        assert hashlib.sha256(image.content).hexdigest() == row["sha256"]

        assert (await http.get(f"/jobs/{uuid.uuid4()}")).status_code == 404
        assert (await http.get("/jobs/not-a-uuid")).status_code == 404


async def test_an_image_key_that_climbs_out_of_the_store_is_not_served(
    web_config: Config, gateway: Gateway, tmp_path: Path
) -> None:
    secret = tmp_path / "objects" / "secret.txt"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_text("not for the web")
    job = await insert_job(gateway, "a climbing key")
    await gateway.execute_sql(
        "INSERT INTO imagen.images (owner_user_id, job_id, prompt, backend, model, seed, width, "
        "height, bucket, storage_path, mime, bytes, sha256) SELECT owner_user_id, id, prompt, "
        "backend, 'mock', 1, width, height, $2, '../secret.txt', 'image/png', 1, "
        "repeat('0', 64) FROM imagen.jobs WHERE id = $1",
        job,
        web_config.storage.bucket,
    )
    async with dashboard(web_config) as url, httpx.AsyncClient(base_url=url) as http:
        response = await http.get(f"/jobs/{job}/image")
    assert response.status_code == 404
    assert "not for the web" not in response.text
    assert "invalid object key" in response.text


async def test_cancel_needs_our_origin_and_the_session_csrf_token(
    web_config: Config, gateway: Gateway
) -> None:
    job = await insert_job(gateway, "cancel me")
    async with dashboard(web_config) as url, httpx.AsyncClient(base_url=url) as http:
        page = await http.get(f"/jobs/{job}")
        token = csrf_of(page.text)
        action = f"/jobs/{job}/cancel"
        ours = {"origin": url}
        # Another site's form: refused before the form is read.
        foreign = await http.post(action, data={"csrf": token}, headers={"origin": "http://evil"})
        assert foreign.status_code == 403
        no_origin = await http.post(action, data={"csrf": token})
        assert no_origin.status_code == 403
        forged = await http.post(action, data={"csrf": "0" * 64}, headers=ours)
        assert forged.status_code == 403
        # A client with no session of its own cannot reuse ours.
        async with httpx.AsyncClient(base_url=url) as stranger:
            alien = await stranger.post(action, data={"csrf": token}, headers=ours)
            assert alien.status_code == 403
        assert (await gateway.fetchrow("load_job", job))["status"] == "pending"  # type: ignore[index]

        done = await http.post(action, data={"csrf": token}, headers=ours)
        assert done.status_code == 303
        assert done.headers["location"] == f"/jobs/{job}?note=cancelled"
        assert (await gateway.fetchrow("load_job", job))["status"] == "cancelled"  # type: ignore[index]

        retried = await http.post(f"/jobs/{job}/retry", data={"csrf": token}, headers=ours)
        assert retried.headers["location"] == f"/jobs/{job}?note=retried"
        assert (await gateway.fetchrow("load_job", job))["status"] == "pending"  # type: ignore[index]
        again = await http.post(f"/jobs/{job}/retry", data={"csrf": token}, headers=ours)
        assert again.headers["location"] == f"/jobs/{job}?note=not-retryable"


async def test_a_token_is_checked_on_every_request(web_config: Config) -> None:
    token = "t" * 32
    async with dashboard(web_config, token) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            refused = await http.get("/")
            assert refused.status_code == 401
            assert "token" in refused.text
            assert (await http.get("/static/style.css")).status_code == 401
            assert (await http.get("/", params={"token": "wrong" * 8})).status_code == 401
            bearer = await http.get("/", headers={"authorization": f"Bearer {token}"})
            assert bearer.status_code == 200
        async with httpx.AsyncClient(base_url=url) as browser:
            login = await browser.get("/", params={"token": token})
            assert login.status_code == 303 and login.headers["location"] == "/"
            cookie = login.headers["set-cookie"]
            assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
            assert token not in cookie
            assert (await browser.get("/")).status_code == 200


async def read_events(url: str, query: str, until: bytes) -> bytes:
    """The event-stream message holding ``until``. A bare socket: an event stream never ends,
    and httpx's nested stream generators warn when a test stops reading one half-way."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    received = b""
    with trio.fail_after(20):
        sock = await trio.open_tcp_stream(host, int(port))
        async with sock:
            await sock.send_all(f"GET /events?{query} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            while until not in received or b"\n\n" not in received[received.index(until) :]:
                received += await sock.receive_some(65536)
    assert b"text/event-stream" in received and b"retry: 2000" in received
    return received[received.index(until) :].split(b"\n\n")[0]


async def test_events_stream_pushes_a_new_job_live(web_config: Config, gateway: Gateway) -> None:
    async with dashboard(web_config) as url:
        cursor = await gateway.fetchval("dash_last_event_id")
        host, port = url.removeprefix("http://").rsplit(":", 1)
        # A bare socket: an event stream never ends, and httpx's nested stream generators
        # warn when a test stops reading one half-way.
        with trio.fail_after(20):
            sock = await trio.open_tcp_stream(host, int(port))
            async with sock:
                await sock.send_all(
                    f"GET /events?after={cursor} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
                )
                received = b""
                while b"text/event-stream" not in received or b"retry: 2000" not in received:
                    received += await sock.receive_some(65536)
                job = await insert_job(gateway, "live owl")
                while str(job).encode() not in received:
                    received += await sock.receive_some(65536)
                while b"\n\n" not in received[received.index(str(job).encode()) :]:
                    received += await sock.receive_some(65536)
        message = received[received.index(str(job).encode()) :].split(b"\n\n")[0]
        assert b'"status":"pending"' in message


async def test_a_job_page_follows_its_job_whatever_the_cursor(
    web_config: Config, gateway: Gateway
) -> None:
    job = await insert_job(gateway, "an owl to follow")
    async with dashboard(web_config) as url, httpx.AsyncClient(base_url=url) as http:
        page = (await http.get(f"/jobs/{job}")).text
        cursor = page.split('data-cursor="', 1)[1].split('"', 1)[0]
        assert 'id="job-status">pending<' in page
        # Changed after the page was read, before its stream connected: the page's own
        # cursor still sees it.
        assert await gateway.cancel_job(job, "test") == "cancelled"
        first = await read_events(url, f"after={cursor}&job={job}", b"event: update")
        assert b'"status":"cancelled"' in first and str(job).encode() in first
        # A cursor already past the change (a commit that landed after a later position was
        # read) still gets the job's row as it is now.
        late = await gateway.fetchval("dash_last_event_id")
        again = await read_events(url, f"after={late}&job={job}", b"event: update")
        assert b'"status":"cancelled"' in again and b'"queue"' not in again


async def test_workers_show_their_health_with_or_without_the_column(
    web_config: Config, gateway: Gateway
) -> None:
    await gateway.execute_sql(
        "INSERT INTO imagen.workers (worker_id, backends, hostname, pid) "
        "VALUES ('w-dash', ARRAY['mock', 'comfy'], 'gpu-host', 42)"
    )
    async with dashboard(web_config) as url, httpx.AsyncClient(base_url=url) as http:
        before = (await http.get("/")).text
        assert "w-dash" in before and "mock, comfy" in before and "healthy" in before
        # The column another migration adds: read through to_jsonb, so both shapes render.
        await gateway.execute_sql(
            "ALTER TABLE imagen.workers ADD COLUMN IF NOT EXISTS health jsonb "
            "NOT NULL DEFAULT '{}'::jsonb"
        )
        await gateway.execute_sql(
            "UPDATE imagen.workers SET health = jsonb_build_object('comfy', jsonb_build_object("
            "'fault', 'dependency', 'reason', 'connection refused', "
            "'since', '2026-12-01T10:00:00Z')) WHERE worker_id = 'w-dash'"
        )
        after = (await http.get("/")).text
        assert "comfy: dependency: connection refused" in after
