"""The reconcile API over the in-memory ledger: shapes, limits, errors, documentation."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from streamwreck.api.app import create_app
from streamwreck.core.bucket_ledger import InMemoryLedger
from streamwreck.core.records import RecordId
from streamwreck.core.settings import ApiSettings, load_settings

SEQ = "49590338271490256608559692538361571095921575989136588898"
SHARD = "shardId-000000000000"


@pytest.fixture
def ledger() -> InMemoryLedger:
    ledger = InMemoryLedger(ttl_seconds=3600)
    ledger.record([RecordId("orders", SHARD, SEQ, 0), RecordId("orders", SHARD, SEQ, 1)], "e1", 1_800_000_000)
    ledger.record([RecordId("orders", SHARD, SEQ, 1)], "e2", 1_800_000_100)
    return ledger


@pytest.fixture
def client(ledger: InMemoryLedger) -> Iterator[TestClient]:
    with TestClient(create_app(load_settings(ApiSettings, max_records_per_request=5), ledger)) as client:
        yield client


def _rec(seq: str, sub: int = 0, shard: str = SHARD) -> dict[str, object]:
    return {"shard_id": shard, "sequence_number": seq, "sub_sequence_number": sub}


def test_answers_unprocessed_and_duplicates(client: TestClient) -> None:
    body = {"stream": "orders", "records": [_rec(SEQ), _rec(SEQ, 1), _rec(SEQ, 2), _rec(SEQ, shard="shardId-1")]}
    response = client.post("/reconcile", json=body)
    assert response.status_code == 200
    answer = response.json()
    assert answer["checked"] == 4
    assert answer["unprocessed"] == [_rec(SEQ, 2), _rec(SEQ, shard="shardId-1")]
    assert answer["duplicates"] == [{**_rec(SEQ, 1), "count": 2}]
    assert answer["unreadable"] == []
    assert answer["ledger"] == {
        "healthy": True,
        "evictions": 0,
        "flushes": 0,
        "started_at": answer["ledger"]["started_at"],
        "ttl_seconds": 3600,
    }
    assert answer["ledger"]["started_at"].endswith("Z")


def test_sub_sequence_defaults_to_zero(client: TestClient) -> None:
    body = {"stream": "orders", "records": [{"shard_id": SHARD, "sequence_number": SEQ}]}
    assert client.post("/reconcile", json=body).json()["unprocessed"] == []


def test_original_shape_array_with_stream_and_shard_in_the_query(client: TestClient) -> None:
    response = client.post("/reconcile", params={"stream": "orders", "shard_id": SHARD}, json=[SEQ, "7"])
    assert response.status_code == 200
    assert response.json()["unprocessed"] == [_rec("7")]


def test_original_shape_needs_the_query(client: TestClient) -> None:
    response = client.post("/reconcile", params={"stream": "orders"}, json=[SEQ])
    assert response.status_code == 422
    assert "shard_id" in response.json()["message"]


def test_over_the_limit_is_413_saying_the_limit(client: TestClient) -> None:
    response = client.post("/reconcile", json={"stream": "orders", "records": [_rec(str(i)) for i in range(6)]})
    assert response.status_code == 413
    assert response.json()["error"] == "too_many_records"
    assert "limit is 5" in response.json()["message"]
    legacy = client.post("/reconcile", params={"stream": "s", "shard_id": "x"}, json=["1"] * 6)
    assert legacy.status_code == 413


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"stream": "orders", "records": [_rec("1"), _rec("01")]}, "record 1: records[1].sequence_number: "),
        ({"stream": "orders", "records": [_rec("1"), _rec("2", shard="bad shard")]}, "record 1: records[1].shard_id"),
        ({"stream": "orders", "records": [_rec("1", -1)]}, "record 0: records[0].sub_sequence_number"),
        ({"stream": "", "records": []}, "stream: "),
        ({"records": []}, "stream: Field required"),
        ({"stream": "orders", "records": [{**_rec("1"), "extra": 1}]}, "record 0: records[0].extra"),
    ],
)
def test_invalid_records_are_422_naming_the_index(client: TestClient, body: object, message: str) -> None:
    response = client.post("/reconcile", json=body)
    assert response.status_code == 422
    assert response.json()["message"].startswith(message)


def test_legacy_invalid_sequence_names_the_index(client: TestClient) -> None:
    response = client.post("/reconcile", params={"stream": "s", "shard_id": "x"}, json=["1", "x1"])
    assert response.status_code == 422
    assert response.json()["message"].startswith("record 1: records[1]: ")


@pytest.mark.parametrize("raw", [b"{not json", b'"a string"', b"\xff\xfe", b"[" * 100_000, b"9" * 5000])
def test_garbage_bodies_are_422(client: TestClient, raw: bytes) -> None:
    response = client.post("/reconcile", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422
    assert response.json()["error"] in {"invalid_json", "invalid_body"}


def test_ledger_down_is_503_with_retry_after(client: TestClient, ledger: InMemoryLedger) -> None:
    ledger.reachable = False
    response = client.post("/reconcile", json={"stream": "orders", "records": [_rec("1")]})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"] == "ledger_unavailable"
    assert client.get("/readyz").status_code == 503
    assert client.get("/healthz").status_code == 200


def test_api_key_when_configured(ledger: InMemoryLedger) -> None:
    with TestClient(create_app(load_settings(ApiSettings, api_key="s3cret"), ledger)) as client:
        body = {"stream": "orders", "records": [_rec("1")]}
        assert client.post("/reconcile", json=body).status_code == 401
        assert client.post("/reconcile", json=body, headers={"X-Api-Key": "wrong"}).status_code == 401
        assert client.post("/reconcile", json=body, headers={"X-Api-Key": "s3cret"}).status_code == 200


def test_openapi_documents_both_shapes_and_every_field(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/reconcile"]["post"]
    assert set(operation["requestBody"]["content"]["application/json"]["examples"]) == {"records", "legacy"}
    assert {"413", "422", "503"} <= set(operation["responses"])
    schemas = spec["components"]["schemas"]
    names = ("ReconcileRequest", "RecordInput", "ReconcileResponse", "LedgerStatus", "RecordRef", "DuplicateRecord")
    for name in (*names, "Problem"):
        assert name in schemas, name
    for name in names:
        for field, definition in schemas[name]["properties"].items():
            assert definition.get("description"), f"{name}.{field} has no description"
            assert "$ref" in definition or definition.get("examples"), f"{name}.{field} has no example"
    assert client.get("/docs").status_code == 200


def test_a_non_ascii_api_key_is_401_not_500(ledger: InMemoryLedger) -> None:
    with TestClient(create_app(load_settings(ApiSettings, api_key="s3cret"), ledger)) as client:
        body = {"stream": "orders", "records": [_rec("1")]}
        response = client.post("/reconcile", json=body, headers={"X-Api-Key": "s\u00e9cret".encode()})
        assert response.status_code == 401


def test_unknown_paths_and_methods_answer_the_error_shape(client: TestClient) -> None:
    missing = client.get("/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = client.get("/reconcile")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"


def test_records_whose_ledger_data_is_unreadable_are_neither_processed_nor_unprocessed(
    client: TestClient, ledger: InMemoryLedger
) -> None:
    ((key, item),) = ledger.items.values.items()
    ledger.items.values[key] = item[:-3]  # cut short
    answer = client.post("/reconcile", json={"stream": "orders", "records": [_rec(SEQ), _rec(SEQ, 1)]}).json()
    assert answer["unreadable"] == [_rec(SEQ), _rec(SEQ, 1)]
    assert answer["unprocessed"] == [] and answer["duplicates"] == []


def test_a_ledger_of_another_format_is_503_naming_both(ledger: InMemoryLedger) -> None:
    from dataclasses import replace

    original = ledger.items.health

    def other_format(ttl_seconds: int):  # type: ignore[no-untyped-def]
        health = original(ttl_seconds)
        return replace(health, nodes=[replace(node, ledger_format="records") for node in health.nodes])

    ledger.items.health = other_format  # type: ignore[method-assign]
    with TestClient(create_app(load_settings(ApiSettings), ledger)) as client:
        response = client.post("/reconcile", json={"stream": "orders", "records": [_rec(SEQ)]})
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "'records'" in response.json()["message"] and "'buckets'" in response.json()["message"]
        assert client.get("/readyz").status_code == 503
