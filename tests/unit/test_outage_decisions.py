"""Fault classes in the pure core (issue 14): an outage refunds the attempt, a kept image is
re-used instead of rendered, and the classification of the adapters' replies."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from imagen_actors.backends.comfyui_preflight import missing_in, rejection_class
from imagen_actors.core import decisions as dc
from imagen_actors.core import events as ev
from imagen_actors.core import kept
from imagen_actors.core.errors import ErrorClass
from imagen_actors.core.fold import IllegalTransitionError, JobState, fold, replay
from imagen_actors.core.records import CompletionRows, Decide
from imagen_actors.storage.supabase_errors import parse_failure
from tests.support import events as support

T0 = datetime(2026, 12, 1, 12, 3, tzinfo=UTC)
JOB = uuid.UUID("99999999-9999-4999-8999-999999999999")
W = "host:w1"


def apply(state: JobState, decide: Decide, seconds: int) -> tuple[JobState, list[ev.Event]]:
    events = list(decide(state, T0 + timedelta(seconds=seconds)))
    return replay(events, onto=state), events


def running(max_attempts: int = 1) -> tuple[JobState, list[ev.Event]]:
    submitted = support.submitted(JOB, T0, max_attempts=max_attempts)
    s = replay([submitted])
    s, claimed = apply(s, dc.claim(W, 60), 1)
    return s, [submitted, *claimed]


@pytest.mark.parametrize("error_class", ["dependency", "configuration"])
def test_an_outage_requeues_with_the_attempt_refunded(error_class: str) -> None:
    """Even on the last attempt: the job goes back to pending at attempt 0, the reason and
    error recorded, no backoff; a job fault on the last attempt fails the job instead."""
    s, _ = running(max_attempts=1)
    fault: ErrorClass = "dependency" if error_class == "dependency" else "configuration"
    after, events = apply(
        s, dc.failure(W, "flux: connection refused", fault, "executor", attempt=1), 2
    )
    failed, requeued = events
    assert isinstance(failed, ev.GenerationFailed) and failed.error_class == error_class
    assert isinstance(requeued, ev.JobRequeued)
    assert requeued.refund_attempt and requeued.retry_at is None
    assert requeued.reason == f"{error_class} fault: flux: connection refused"
    assert (after.status, after.attempts, after.error) == ("pending", 0, "flux: connection refused")
    job_fault, _ = apply(s, dc.failure(W, "bad size", "transient", "executor", attempt=1), 2)
    assert job_fault.status == "failed"


def test_without_wait_an_outage_fails_the_job() -> None:
    """generate/compare: nobody waits, so the outage fails the one-shot job, class kept."""
    s, _ = running()
    after, events = apply(
        s,
        dc.failure(W, "rep: not configured", "configuration", "executor", attempt=1, wait=False),
        2,
    )
    assert after.status == "failed"
    assert isinstance(events[-1], ev.JobFailed) and events[-1].error_class == "configuration"


def test_a_kept_image_is_reused_and_completes_without_a_render() -> None:
    """Upload failed on a storage outage: the requeue records the kept file; the retry's
    GenerationReused restores the outcome so ImageStored is legal, with no second render."""
    s, stream = running()
    s, succeeded = apply(s, dc.generation_succeeded(W, support.outcome(), 60, attempt=1), 3)
    s, requeued = apply(
        s,
        dc.failure(
            W,
            "storage: 502",
            "dependency",
            "uploader",
            attempt=1,
            record_generation_failed=False,
            kept_image="/out/owl.png",
        ),
        4,
    )
    stream += [*succeeded, *requeued]
    assert (s.status, s.attempts, s.generation) == ("pending", 0, None)
    found = kept.kept_generation(stream)
    assert found is not None and found[1] == "/out/owl.png"
    s, claimed = apply(s, dc.claim(W, 60), 5)
    stream += claimed
    assert kept.kept_generation(stream) == found  # the claim's prior stream still says so
    s, reused = apply(s, kept.reuse_generation(W, found[0], found[1], 60, attempt=1), 6)
    assert isinstance(reused[0], ev.GenerationReused) and reused[0].sha256 == found[0].sha256
    assert s.generation is not None and s.generation.sha256 == found[0].sha256
    s, done = apply(
        s,
        dc.complete(W, support.image_row(JOB), attempt=1, local_path="/out/owl.png")(
            CompletionRows(image_id=uuid.uuid4(), usage_id=None)
        ),
        7,
    )
    assert (s.status, s.attempts) == ("done", 1)
    assert [type(e).__name__ for e in stream + reused + done].count("GenerationSucceeded") == 1


def test_image_stored_without_generation_is_still_illegal() -> None:
    s, _ = running()
    with pytest.raises(IllegalTransitionError):
        fold(
            s,
            ev.ImageStored(
                job_id=JOB,
                occurred_at=T0,
                actor="uploader",
                worker_id=W,
                image_id=uuid.uuid4(),
                bucket="b",
                storage_path="k",
                bytes=1,
                sha256="0",
            ),
        )


def test_a_requeue_without_a_kept_image_renders_again() -> None:
    s, stream = running(max_attempts=3)
    s, succeeded = apply(s, dc.generation_succeeded(W, support.outcome(), 60, attempt=1), 2)
    _, requeued = apply(s, dc.reap(W, own=True), 3)
    assert kept.kept_generation([*stream, *succeeded, *requeued]) is None


def _reply(status: int, body: bytes, ctype: str = "application/json") -> httpx.Response:
    request = httpx.Request("POST", "http://storage/object/b/k")
    return httpx.Response(status, content=body, headers={"content-type": ctype}, request=request)


@pytest.mark.parametrize(
    ("status", "body", "ctype", "expected"),
    [
        (502, b"<html><title>502 Bad Gateway</title></html>", "text/html", "dependency"),
        (
            544,
            b'{"statusCode":"544","code":"DatabaseTimeout","error":"DatabaseTimeout",'
            b'"message":"timeout"}',
            "application/json",
            "dependency",
        ),
        (429, b'{"message":"slow down"}', "application/json", "dependency"),
        (
            400,
            b'{"statusCode":"403","code":"InvalidJWT","error":"InvalidJWT","message":"exp"}',
            "application/json",
            "configuration",
        ),
        (
            400,
            b'{"statusCode":"404","code":"NoSuchBucket","error":"NoSuchBucket",'
            b'"message":"Bucket not found"}',
            "application/json",
            "configuration",
        ),
        (
            400,
            b'{"statusCode":"413","code":"EntityTooLarge","error":"Payload too large",'
            b'"message":"too large"}',
            "application/json",
            "permanent",
        ),
    ],
)
def test_storage_replies_map_to_one_class(
    status: int, body: bytes, ctype: str, expected: str
) -> None:
    assert parse_failure(_reply(status, body, ctype)).error_class == expected


GRAPH = {
    "1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "flux.safetensors"}},
    "2": {"class_type": "KSampler", "inputs": {"seed": "${seed}", "sampler_name": "euler"}},
    "3": {"class_type": "SaveImage", "inputs": {"filename_prefix": "imagen"}},
}
INFO = {
    "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [["flux.safetensors"], {}]}}},
    "KSampler": {
        "input": {"required": {"sampler_name": [["euler", "dpmpp"], {}], "seed": ["INT", {}]}}
    },
    "SaveImage": {"input": {"required": {"filename_prefix": ["STRING", {}]}}},
}


def test_preflight_finds_a_missing_file_and_class() -> None:
    assert missing_in(GRAPH, INFO, url="http://c") is None
    no_file = {**INFO, "CheckpointLoaderSimple": {"input": {"required": {"ckpt_name": [[], {}]}}}}
    problem = missing_in(GRAPH, no_file, url="http://c")
    assert problem is not None and "model file 'flux.safetensors'" in problem
    no_class = {k: v for k, v in INFO.items() if k != "KSampler"}
    problem = missing_in(GRAPH, no_class, url="http://c")
    assert problem is not None and "node class KSampler missing" in problem
    assert "ComfyUI may need updating" in problem
    newer = {
        **INFO,
        "CheckpointLoaderSimple": {
            "input": {"required": {"ckpt_name": ["COMBO", {"options": ["flux.safetensors"]}]}}
        },
    }
    assert missing_in(GRAPH, newer, url="http://c") is None


def test_a_bad_value_is_the_jobs_but_a_missing_model_the_servers() -> None:
    missing_model = {
        "error": {"type": "prompt_outputs_failed_validation"},
        "node_errors": {
            "1": {
                "errors": [{"type": "value_not_in_list", "extra_info": {"input_name": "ckpt_name"}}]
            }
        },
    }
    bad_value = {
        "error": {"type": "prompt_outputs_failed_validation"},
        "node_errors": {
            "2": {
                "errors": [
                    {"type": "value_smaller_than_min", "extra_info": {"input_name": "width"}}
                ]
            }
        },
    }
    unknown = {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node X does not exist.",
        }
    }
    assert rejection_class(missing_model) == "configuration"
    assert rejection_class(unknown) == "configuration"
    assert rejection_class(bad_value) == "permanent"


def test_outages_the_probe_misses_are_refunded_only_so_often() -> None:
    """A fault that recurs although the dependency's check passes (an upload that times out
    while the bucket answers) is refunded MAX_OUTAGE_REFUNDS times, then counts as a
    transient attempt, so the job cannot cycle forever; the kept image stays kept."""
    s, _ = running(max_attempts=1)
    for n in range(dc.MAX_OUTAGE_REFUNDS):
        s, _ = apply(s, dc.claim(W, 60), 10 * n + 1) if n else (s, [])
        s, events = apply(
            s,
            dc.failure(
                W,
                "storage: timed out",
                "dependency",
                "uploader",
                attempt=1,
                record_generation_failed=False,
                kept_image="/o/x.png",
            ),
            10 * n + 2,
        )
        assert (s.status, s.attempts, s.outage_refunds) == ("pending", 0, n + 1)
    s, _ = apply(s, dc.claim(W, 60), 100)
    s, events = apply(
        s,
        dc.failure(
            W,
            "storage: timed out",
            "dependency",
            "uploader",
            attempt=1,
            record_generation_failed=False,
        ),
        101,
    )
    (failed,) = events
    assert isinstance(failed, ev.JobFailed) and failed.error_class == "transient"
    assert "after 5 refunded outages" in failed.error and s.status == "failed"
