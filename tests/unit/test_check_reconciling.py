"""The API client and the pipeline, over httpx's MockTransport: request shape, 413 splitting, 503 retries, errors
as one line, bounded batches. The real API is exercised in tests/integration/test_check*.py."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import pytest

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.reconciling import Answer, Pipeline, ReconcileApi
from streamwreck.core.errors import ApiError

LEDGER = {
    "healthy": True,
    "evictions": 0,
    "flushes": 0,
    "started_at": "2026-11-27T16:00:00Z",
    "ttl_seconds": 604800,
}


def rec(n: int, shard: str = "shardId-000000000000", sub: int = 0) -> UserRecord:
    return UserRecord(shard, str(1000 + n), sub, f"pk{n}", None, 1_800_000_000.0, b"d", n)


def api(handler: Callable[[httpx.Request], httpx.Response], **kwargs: Any) -> ReconcileApi:
    slept: list[float] = []
    client = ReconcileApi(
        "http://api.test/", "secret", transport=httpx.MockTransport(handler), sleep=slept.append, **kwargs
    )
    client.slept = slept  # type: ignore[attr-defined]
    return client


def answering(missing: set[str] | None = None, duplicates: dict[str, int] | None = None, limit: int = 10_000) -> Any:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        seen.append({"body": body, "headers": dict(request.headers)})
        if len(body["records"]) > limit:
            return httpx.Response(413, json={"error": "too_many_records", "message": "too many"})
        records = body["records"]
        return httpx.Response(
            200,
            json={
                "checked": len(records),
                "unprocessed": [r for r in records if r["sequence_number"] in (missing or set())],
                "duplicates": [
                    {**r, "count": (duplicates or {})[r["sequence_number"]]}
                    for r in records
                    if r["sequence_number"] in (duplicates or {})
                ],
                "ledger": LEDGER,
            },
        )

    handler.seen = seen  # type: ignore[attr-defined]
    return handler


def test_request_shape_and_answer() -> None:
    handler = answering(missing={"1001"}, duplicates={"1002": 3})
    client = api(handler)
    answer = client.reconcile("orders", [rec(0), rec(1), rec(2, sub=4)])
    sent = handler.seen[0]
    assert sent["headers"]["x-api-key"] == "secret"
    assert sent["body"] == {
        "stream": "orders",
        "records": [
            {"shard_id": "shardId-000000000000", "sequence_number": "1000", "sub_sequence_number": 0},
            {"shard_id": "shardId-000000000000", "sequence_number": "1001", "sub_sequence_number": 0},
            {"shard_id": "shardId-000000000000", "sequence_number": "1002", "sub_sequence_number": 4},
        ],
    }
    assert answer.count(("shardId-000000000000", "1000", 0)) == 1
    assert answer.count(("shardId-000000000000", "1001", 0)) == 0
    assert answer.count(("shardId-000000000000", "1002", 4)) == 3
    assert answer.ledger == LEDGER


def test_a_batch_over_the_server_limit_is_split_and_later_batches_are_cut_to_it() -> None:
    handler = answering(missing={"1003", "1009"}, limit=3)
    client = api(handler)
    answer = client.reconcile("orders", [rec(n) for n in range(10)])
    assert {key[1] for key in answer.unprocessed} == {"1003", "1009"}
    sizes = [len(s["body"]["records"]) for s in handler.seen]
    assert sizes[0] == 10 and all(size <= 3 for size in sizes[-4:])
    handler.seen.clear()
    assert len(client.reconcile("orders", [rec(n) for n in range(10)]).unprocessed) == 2
    assert all(len(s["body"]["records"]) <= 3 for s in handler.seen)  # no more 413s


def test_the_limit_named_by_the_server_is_used() -> None:
    seen: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        size = len(json.loads(request.content)["records"])
        seen.append(size)
        if size > 4:
            return httpx.Response(413, json={"message": f"{size} records in one request; the limit is 4: send them"})
        return answering()(request)

    api(handler).reconcile("orders", [rec(n) for n in range(10)])
    assert seen == [10, 4, 4, 2]


def test_ledger_down_is_retried_after_retry_after_then_one_line() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) < 3:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"message": "memcached down"})
        return answering()(request)

    client = api(handler)
    client.reconcile("orders", [rec(0)])
    assert client.slept == [2.0, 2.0]  # type: ignore[attr-defined]

    down = api(lambda request: httpx.Response(503, headers={"Retry-After": "1"}, json={"message": "memcached down"}))
    with pytest.raises(ApiError, match="unavailable: memcached down"):
        down.reconcile("orders", [rec(0)])


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(401, json={"message": "no"}), "refused the API key"),
        (httpx.Response(404, text="not found"), "does not exist"),
        (httpx.Response(422, json={"message": "record 0: bad"}), r"rejected a batch \(422\): record 0: bad"),
        (httpx.Response(500, text="boom"), r"failed \(500\)"),
        (httpx.Response(200, text="not json"), "not JSON"),
        (httpx.Response(200, json={"checked": 1}), "unexpected shape"),
        (httpx.Response(200, json=["not", "an", "object"]), "unexpected shape: the answer: Input should be an object"),
    ],
)
def test_errors_are_one_line(response: httpx.Response, message: str) -> None:
    with pytest.raises(ApiError, match=message) as caught:
        api(lambda request: response).reconcile("orders", [rec(0)])
    assert "\n" not in str(caught.value)


def answer_of(records: Sequence[UserRecord], **changes: Any) -> dict[str, Any]:
    """A well-formed answer for ``records`` (all processed), with fields replaced."""
    return {"checked": len(records), "unprocessed": [], "duplicates": [], "ledger": LEDGER, **changes}


def ref(record: UserRecord, **extra: Any) -> dict[str, Any]:
    return {
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "sub_sequence_number": record.sub_sequence_number,
        **extra,
    }


BATCH = [rec(0), rec(1), rec(2, sub=4)]
STRANGER = rec(9)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        pytest.param(
            answer_of(BATCH, ledger={**LEDGER, "started_at": "yesterday"}),
            "ledger.started_at: Input should be a valid datetime",
            id="malformed ledger time",
        ),
        pytest.param(
            answer_of(BATCH, ledger={**LEDGER, "evictions": "many"}), "ledger.evictions", id="malformed count"
        ),
        pytest.param(
            answer_of(BATCH, ledger=None), "ledger: Input should be an object, got None", id="no ledger object"
        ),
        pytest.param(
            answer_of(BATCH, ledger={**LEDGER, "started_at": "2026-11-27T16:00:00"}),
            "ledger.started_at: Input should have timezone info",
            id="ledger time without a zone",
        ),
        pytest.param(
            answer_of(BATCH, ledger={**LEDGER, "started_at": 1795795200}),
            "ledger.started_at: Input should be a valid datetime",
            id="ledger time as a number",
        ),
        pytest.param(answer_of(BATCH, ledger={**LEDGER, "healthy": "yes"}), "ledger.healthy", id="healthy not a bool"),
        pytest.param(answer_of(BATCH, ledger={**LEDGER, "evictions": -1}), "ledger.evictions", id="negative count"),
        pytest.param(answer_of(BATCH, ledger={**LEDGER, "flushes": 1.5}), "ledger.flushes", id="fractional count"),
        pytest.param(answer_of(BATCH, checked=2), "checked is 2 for a batch of 3 records", id="checked too few"),
        pytest.param(
            answer_of(BATCH, checked=True),
            "checked: Input should be a valid integer, got True",
            id="checked not a number",
        ),
        pytest.param(
            answer_of(BATCH, unprocessed=[ref(STRANGER)]),
            f"unprocessed names shardId-000000000000 {STRANGER.sequence_number}/0, which the batch did not ask about",
            id="unprocessed stranger",
        ),
        pytest.param(
            answer_of(BATCH, unprocessed=[ref(BATCH[2], sub_sequence_number=5)]),
            "which the batch did not ask about",
            id="unprocessed wrong sub-record",
        ),
        pytest.param(
            answer_of(BATCH, duplicates=[ref(STRANGER, count=2)]),
            "duplicates names shardId-000000000000 1009/0, which the batch did not ask about",
            id="duplicate stranger",
        ),
        pytest.param(
            answer_of(BATCH, duplicates=[ref(BATCH[0], count=1)]),
            "duplicates.0.count: Input should be greater than or equal to 2, got 1",
            id="duplicate once",
        ),
        pytest.param(
            answer_of(BATCH, unprocessed=[ref(BATCH[0])], duplicates=[ref(BATCH[0], count=2)]),
            "both unprocessed and a duplicate",
            id="both",
        ),
    ],
)
def test_an_answer_that_does_not_fit_its_batch_is_an_api_error(document: dict[str, Any], message: str) -> None:
    client = api(lambda request: httpx.Response(200, json=document))
    with pytest.raises(ApiError) as caught:
        client.reconcile("orders", BATCH)
    text = str(caught.value)
    assert text.startswith("http://api.test/reconcile answered in an unexpected shape: ") and "\n" not in text
    assert message in text


def test_unreadable_records_count_zero_and_are_kept_apart() -> None:
    document = answer_of(BATCH, unreadable=[ref(BATCH[0])])
    answer = api(lambda request: httpx.Response(200, json=document)).reconcile("orders", BATCH)
    key = ("shardId-000000000000", BATCH[0].sequence_number, 0)
    assert answer.unreadable == {key} and answer.count(key) == 0
    both = answer_of(BATCH, unreadable=[ref(BATCH[0])], unprocessed=[ref(BATCH[0])])
    with pytest.raises(ApiError, match="both unreadable and unprocessed"):
        api(lambda request: httpx.Response(200, json=both)).reconcile("orders", BATCH)


def test_an_answer_names_only_records_of_its_batch_and_counts_them_all() -> None:
    document = answer_of(BATCH, unprocessed=[ref(BATCH[1])], duplicates=[ref(BATCH[2], count=3)])
    answer = api(lambda request: httpx.Response(200, json=document)).reconcile("orders", BATCH)
    assert [
        answer.count(key) for key in (("shardId-000000000000", r.sequence_number, r.sub_sequence_number) for r in BATCH)
    ] == [1, 0, 3]
    assert answer.view.flushes == 0 and answer.view.healthy


def test_a_malformed_answer_stops_the_pipeline_with_an_api_error() -> None:
    bad = answer_of([rec(0)], ledger={**LEDGER, "started_at": "yesterday"})
    stop = threading.Event()
    pipeline = Pipeline(
        api(lambda request: httpx.Response(200, json=bad)), "orders", 1, 1, on_answer=lambda b, a: None, stop=stop
    )
    with pytest.raises(ApiError, match="started_at"):
        for n in range(100):
            pipeline.add([rec(n)])
        pipeline.finish()
    assert isinstance(pipeline.error, ApiError) and stop.is_set()
    pipeline.abort()


def test_a_batch_asked_in_parts_vouches_for_no_more_than_its_weakest_part() -> None:
    answers = iter(
        [
            {"ledger": {**LEDGER, "flushes": 0, "evictions": 3}},
            {"ledger": {**{k: v for k, v in LEDGER.items() if k != "flushes"}, "healthy": False}},
            {"ledger": {**LEDGER, "flushes": 2}},
        ]
    )

    def handler(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        if len(records) > 1:
            return httpx.Response(413, json={"message": "the limit is 1"})
        return httpx.Response(200, json={"checked": 1, "unprocessed": [], "duplicates": [], **next(answers)})

    view = api(handler).reconcile("orders", BATCH).view
    assert (view.healthy, view.evictions, view.flushes) == (False, 3, None)


def test_unreachable_is_retried_then_one_line() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused")

    client = api(refuse)
    with pytest.raises(ApiError, match=r"http://api.test is unreachable \(connection refused\)"):
        client.reconcile("orders", [rec(0)])
    assert len(client.slept) == 3  # type: ignore[attr-defined]


def test_pipeline_batches_bounds_and_answers_everything() -> None:
    in_flight = 0
    most = 0
    lock = threading.Lock()
    inner = answering(missing={"1005"})

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, most
        with lock:
            in_flight += 1
            most = max(most, in_flight)
        time.sleep(0.01)
        with lock:
            in_flight -= 1
        return inner(request)

    answered: list[tuple[int, Answer]] = []

    def on_answer(batch: Sequence[UserRecord], answer: Answer) -> None:
        with lock:
            answered.append((len(batch), answer))

    pipeline = Pipeline(api(handler), "orders", batch_size=7, depth=2, on_answer=on_answer, stop=threading.Event())
    for start in range(0, 50, 5):
        pipeline.add([rec(n) for n in range(start, start + 5)])
    pipeline.finish()
    assert sorted(size for size, _ in answered) == [1, 7, 7, 7, 7, 7, 7, 7]
    assert most <= 2
    assert pipeline.sent == 50
    assert sum(len(a.unprocessed) for _, a in answered) == 1


def test_pipeline_failure_reaches_the_readers() -> None:
    stop = threading.Event()
    pipeline = Pipeline(
        api(lambda request: httpx.Response(401)),
        "orders",
        batch_size=1,
        depth=1,
        on_answer=lambda b, a: None,
        stop=stop,
    )
    with pytest.raises(ApiError, match="API key"):
        for n in range(100):
            pipeline.add([rec(n)])
    assert stop.is_set()
    assert isinstance(pipeline.error, ApiError)
    pipeline.abort()
