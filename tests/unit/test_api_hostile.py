"""Hostile input to the reconcile API: bodies over the byte limit (refused before they are parsed), wrong content
types, malformed, deeply nested or enormous JSON. Always a clear 4xx in the error shape, never a 500."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from streamwreck.api.app import create_app
from streamwreck.core.bucket_ledger import InMemoryLedger
from streamwreck.core.settings import ApiSettings, load_settings

SHARD = "shardId-000000000000"
LIMIT = 64 * 1024
JSON = {"content-type": "application/json"}


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = load_settings(ApiSettings, max_request_bytes=LIMIT)
    with TestClient(create_app(settings, InMemoryLedger(ttl_seconds=3600))) as client:
        yield client


def _problem(response: object, status: int, error: str) -> dict[str, object]:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    body: dict[str, object] = response.json()  # type: ignore[attr-defined]
    assert set(body) >= {"error", "message"} and body["error"] == error, body
    assert "\n" not in str(body["message"])
    return body


def _records(count: int) -> dict[str, object]:
    return {"stream": "s", "records": [{"shard_id": SHARD, "sequence_number": str(i)} for i in range(count)]}


def test_a_body_over_the_byte_limit_is_413_before_it_is_parsed(client: TestClient) -> None:
    body = b"{" + b" " * LIMIT + b"}"  # not even JSON: refused for its size, never parsed
    problem = _problem(client.post("/reconcile", content=body, headers=JSON), 413, "request_too_large")
    assert "65,536 bytes" in str(problem["message"])
    assert "limit is" not in str(problem["message"])  # the checker reads "limit is N" as a number of records


def test_a_chunked_body_without_content_length_is_cut_off_at_the_limit(client: TestClient) -> None:
    def chunks() -> Iterator[bytes]:
        yield b'{"stream": "s", "records": ['
        for _ in range(LIMIT // 100):
            yield b" " * 200  # well past the limit in all, however it is cut

    response = client.post("/reconcile", content=chunks(), headers=JSON)
    _problem(response, 413, "request_too_large")


def test_a_body_just_within_the_limit_is_answered(client: TestClient) -> None:
    response = client.post("/reconcile", json=_records(10))
    assert response.status_code == 200 and response.json()["checked"] == 10


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "json"]
)
def test_other_content_types_are_415(client: TestClient, content_type: str) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = client.post("/reconcile", content=b'{"stream": "s", "records": []}', headers=headers)
    problem = _problem(response, 415, "unsupported_media_type")
    assert "application/json" in str(problem["message"])


@pytest.mark.parametrize("content_type", ["application/json; charset=utf-8", "APPLICATION/JSON", "application/x+json"])
def test_json_content_types_with_parameters_are_accepted(client: TestClient, content_type: str) -> None:
    body = b'{"stream": "s", "records": []}'
    response = client.post("/reconcile", content=body, headers={"content-type": content_type})
    assert response.status_code == 200


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"null",
        b"{}",
        b"[[[[[[[[]]]]]]]]",
        b"[" * 5000 + b"]" * 5000,  # nested deeper than the parser allows
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b'{"stream": "s", "records": [{"shard_id": "shardId-0", "sequence_number": "1", "sub_sequence_number": '
        + b"9" * 400
        + b"}]}",
        b'{"stream": "s", "records": [{"shard_id": "shardId-0", "sequence_number": "1", "sub_sequence_number": '
        b"1e999}]}",
        b'{"stream": "s", "records": [{"shard_id": "shardId-0", "sequence_number": 1e308}]}',
        b'{"stream": "s", "records": [{"shard_id": "shardId-0", "sequence_number": "' + b"9" * 200 + b'"}]}',
        b'{"stream": "s", "records": {"0": 1}}',
        b'{"stream": "s\\u0000", "records": []}',
        b'{"stream": "\xed\xa0\x80", "records": []}',  # a lone surrogate in UTF-8
        b'{"stream": "s", "records": [], "records": 7}',
        b"NaN",
        b'{"stream": "s", "records": [' + b"1," * 1000 + b"1]}",
    ],
)
def test_malformed_nested_and_enormous_json_is_a_clear_4xx(client: TestClient, raw: bytes) -> None:
    response = client.post("/reconcile", content=raw, headers=JSON)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    body = response.json()
    assert body["error"] and body["message"]


@pytest.mark.parametrize(
    "params",
    [{"stream": "s" * 10_000, "shard_id": "x"}, {"stream": "s", "shard_id": "\u0000"}, {"stream": "", "shard_id": ""}],
)
def test_hostile_query_strings_are_a_clear_4xx(client: TestClient, params: dict[str, str]) -> None:
    response = client.post("/reconcile", params=params, json=["1"])
    assert response.status_code == 422, response.text
    assert response.json()["error"]


def test_metrics_count_requests_by_status_and_records(client: TestClient) -> None:
    client.post("/reconcile", json=_records(3))
    client.post("/reconcile", content=b"{", headers=JSON)
    client.get("/no/such/path")
    text = client.get("/metrics").text
    assert 'streamwreck_api_requests_total{method="POST",route="/reconcile",status="200"} 1.0' in text
    assert 'streamwreck_api_requests_total{method="POST",route="/reconcile",status="422"} 1.0' in text
    assert 'streamwreck_api_requests_total{method="GET",route="other",status="404"} 1.0' in text
    assert "streamwreck_api_records_checked_total 3.0" in text
    assert "streamwreck_api_records_unprocessed_total 3.0" in text
    assert 'streamwreck_api_request_duration_seconds_bucket{le="0.005",method="POST",route="/reconcile"}' in text
