"""core.chain is imagen.job_event_hash in Python: checked against the server on the rows a
real worker wrote and on jsonb values chosen to be awkward (key order, numbers, escapes)."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from imagen_actors.core import chain
from imagen_actors.db.gateway import Gateway
from tests.support.jobs import insert_job
from tests.support.worker import make_config, running_worker, wait_all_terminal

pytestmark = pytest.mark.db

AWKWARD = [
    '{"b": 1, "aa": 2, "a": 3, "ab": {"z": [], "y": {}}}',
    '{"n": [1.50, 1e3, 1.0e3, -0, -0.0, 0.0000001, 1e-7, 12345678901234567890.5, -2.5E+2]}',
    '{"s": "tab\\t nl\\n quote\\" back\\\\ bell\\u0007 del\\u007f é ключ 😀 \\u2028"}',
    '{"ключ": 1, "é": 2, "e": 3, "éé": 4, "\\u00e9a": 5}',
    '{"dup": 1, "dup": 2, "t": true, "f": false, "z": null}',
    '[1, "two", [3, [4, {"five": 5}]]]',
    '"just a string"',
    "42",
]


async def test_python_canonical_text_is_the_servers(gateway: Gateway) -> None:
    job = uuid.uuid4()
    for text in AWKWARD:
        row = (
            await gateway.fetch_sql(
                "SELECT imagen.job_event_canonical($1, 3, 'T', 'worker', NULL,"
                " '2026-02-03 04:05:06.789012+00', $2::jsonb) AS c,"
                " (extract(epoch FROM timestamptz '2026-02-03 04:05:06.789012+00')"
                "  * 1000000)::bigint AS us, $2::jsonb::text AS t",
                job,
                text,
            )
        )[0]
        value = json.loads(row["t"], parse_float=Decimal)
        assert chain.jsonb_text(value) == row["t"], text
        ours = chain.canonical(job, 3, "T", "worker", None, row["us"], value)
        assert ours == row["c"], text


async def test_python_links_match_every_stored_hash(database_url: str, tmp_path: Path) -> None:
    async with running_worker(make_config(tmp_path, database_url)) as (_h, gw):
        await insert_job(gw, "a lighthouse at dusk", opts={"guidance": 3.5, "é": [1.0, "x"]})
        await insert_job(gw, "[fail:permanent] owl")
        await wait_all_terminal(gw)
        rows = await gw.fetch_sql(
            "SELECT job_id, seq, type, actor, worker_id, data::text AS data, hash,"
            " (extract(epoch FROM occurred_at) * 1000000)::bigint AS us,"
            " lag(hash) OVER (PARTITION BY job_id ORDER BY seq) AS prev, occurred_at"
            " FROM imagen.job_events ORDER BY job_id, seq"
        )
    assert len(rows) > 10
    for r in rows:
        data = json.loads(r["data"], parse_float=Decimal)
        assert chain.micros(r["occurred_at"]) == r["us"]
        assert chain.from_micros(r["us"]) == r["occurred_at"]
        got = chain.link(
            r["prev"], r["job_id"], r["seq"], r["type"], r["actor"], r["worker_id"], r["us"], data
        )
        assert got == r["hash"], (r["type"], r["data"])
