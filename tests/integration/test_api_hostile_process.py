"""Hostile input to a real ``streamwreck api`` process (uvicorn, real memcached): schemathesis fuzzing from its
OpenAPI document over HTTP, and bodies over the byte limit refused before they are read in full."""

from __future__ import annotations

import socket
import time

import httpx
import schemathesis
from helpers.fuzzing import fuzz

from streamwreck.local.processes import Service

EXAMPLES = 150  # per operation and mode: 300 cases for POST /reconcile


def test_fuzzing_a_real_api_process_finds_no_server_error(api_server: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{api_server.url}/openapi.json")
    started = time.monotonic()
    seen = fuzz(schema, EXAMPLES, base_url=api_server.url)
    assert time.monotonic() - started < 60
    assert seen["POST /reconcile"] >= 2 * EXAMPLES * 0.9, seen
    assert not [label for label in seen if label.startswith("5xx")], seen
    assert httpx.get(f"{api_server.url}/healthz").status_code == 200  # and it is still up


def test_a_declared_oversized_body_is_refused_before_it_is_sent(api_server: Service) -> None:
    """Content-Length says 64 MiB: the answer is 413 after the headers alone (no byte of the body is sent)."""
    host, port = api_server.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /reconcile HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 67108864\r\n\r\n"
        )
        answer = ""
        while '"}' not in answer:  # the headers, then the body (in another segment, as it may be)
            chunk = sock.recv(65536).decode()
            assert chunk, answer
            answer += chunk
    assert answer.startswith("HTTP/1.1 413"), answer
    assert '"error":"request_too_large"' in answer


def test_a_chunked_oversized_body_is_cut_off(api_server: Service) -> None:
    def body():  # type: ignore[no-untyped-def]
        yield b'{"stream": "s", "records": ['
        for _ in range(6 * 1024):
            yield b" " * 1024  # 6 MiB in all, over the default 4 MiB

    response = httpx.post(
        f"{api_server.url}/reconcile", content=body(), headers={"content-type": "application/json"}, timeout=30
    )
    assert response.status_code == 413 and response.json()["error"] == "request_too_large"


def test_metrics_are_served(api_server: Service) -> None:
    httpx.post(f"{api_server.url}/reconcile", json={"stream": "s", "records": []})
    text = httpx.get(f"{api_server.url}/metrics").text
    assert 'streamwreck_api_requests_total{method="POST",route="/reconcile",status="200"}' in text
