"""Stand-in for LocalStack's gateway, used where the LocalStack image cannot be pulled (docs/deploy.md says why).

One endpoint (GATEWAY_LISTEN, default 0.0.0.0:4566, as LocalStack's) in front of two emulators it starts itself:
kinesis-local (npm `kinesis-local`, the engine LocalStack's Kinesis provider runs) for Kinesis, and moto in server
mode for everything else (SNS, SQS, DynamoDB, CloudWatch). Each request goes to one or the other by the service
named in its SigV4 credential scope. It speaks HTTP/1.1 and HTTP/2 cleartext (the KCL's Kinesis client uses h2c),
and answers LocalStack's GET /_localstack/health. The emulators listen on 127.0.0.1 only.

Environment, as LocalStack reads it: GATEWAY_LISTEN, SERVICES, KINESIS_LATENCY (ms, default 500),
AWS_DEFAULT_REGION; the account is LocalStack's, 000000000000.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from hypercorn.asyncio import serve
from hypercorn.config import Config

ACCOUNT = "000000000000"
KINESIS_LOCAL = os.environ.get("STANDIN_KINESIS_LOCAL", "/opt/kinesis-local/node_modules/kinesis-local/main.js")
LOOPBACK = os.path.join(os.path.dirname(os.path.abspath(__file__)), "loopback.cjs")
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer"}
SCOPE = re.compile(rb"Credential=[^/]+/\d{8}/[^/]+/([^/]+)/aws4_request")
VERSION = "4.0.3-standin"

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}), file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_backends() -> tuple[dict[str, int], list[subprocess.Popen[bytes]]]:
    kinesis_port, moto_port = free_port(), free_port()
    latency = f"{int(os.environ.get('KINESIS_LATENCY', '500'))}ms"
    region = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
    kinesis_env = {
        **os.environ,
        "KINESIS_MOCK_PLAIN_PORT": str(kinesis_port),
        "KINESIS_MOCK_TLS_PORT": str(free_port()),
        "KINESIS_MOCK_CERT_PATH": os.path.join(os.path.dirname(KINESIS_LOCAL), "server.json"),
        "AWS_ACCOUNT_ID": ACCOUNT,
        "AWS_REGION": region,
        "SHARD_LIMIT": "200",
        "LOG_LEVEL": "WARN",
        **{
            f"{operation}_DURATION": latency
            for operation in (
                "CREATE_STREAM",
                "DELETE_STREAM",
                "REGISTER_STREAM_CONSUMER",
                "START_STREAM_ENCRYPTION",
                "STOP_STREAM_ENCRYPTION",
                "DEREGISTER_STREAM_CONSUMER",
                "MERGE_SHARDS",
                "SPLIT_SHARD",
                "UPDATE_SHARD_COUNT",
                "UPDATE_STREAM_MODE",
            )
        },
    }
    moto_env = {**os.environ, "MOTO_ACCOUNT_ID": ACCOUNT}
    processes = [
        subprocess.Popen(["node", "-r", LOOPBACK, KINESIS_LOCAL], env=kinesis_env),
        subprocess.Popen(["moto_server", "-H", "127.0.0.1", "-p", str(moto_port)], env=moto_env),
    ]
    ports = {"kinesis": kinesis_port, "moto": moto_port}
    deadline = time.monotonic() + 60
    for name, port in ports.items():
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers, with an error for a bare GET: good enough
            except OSError:
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    stop(processes)
                    raise SystemExit(f"gateway: {name} did not start on 127.0.0.1:{port}") from None
                time.sleep(0.2)
    log("backends_started", **ports)
    return ports, processes


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()  # kinesis-local sometimes ignores SIGTERM
            process.wait(timeout=5)


def make_app(ports: dict[str, int], services: list[str]) -> Callable[[Scope, Receive, Send], Awaitable[None]]:
    client = httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=5.0), limits=httpx.Limits(max_connections=200))

    async def respond(send: Send, status: int, body: bytes, content_type: str = "application/json") -> None:
        headers = [(b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await client.aclose()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/_localstack/health"):
            body = {"services": dict.fromkeys(services, "running"), "edition": "standin", "version": VERSION}
            await respond(send, 200, json.dumps(body).encode())
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        headers = [(k, v) for k, v in scope["headers"] if k.decode().lower() not in HOP_BY_HOP and k != b":authority"]
        if not any(k.lower() == b"host" for k, _ in headers):
            authority = dict(scope["headers"]).get(b":authority") or f"{scope['server'][0]}:{scope['server'][1]}"
            headers.append((b"host", authority if isinstance(authority, bytes) else authority.encode()))
        authorization = dict((k.lower(), v) for k, v in headers).get(b"authorization", b"")
        match = SCOPE.search(authorization)
        target = "kinesis" if match and match.group(1) == b"kinesis" else "moto"
        url = f"http://127.0.0.1:{ports[target]}{scope['raw_path'].decode() or scope['path']}"
        if scope["query_string"]:
            url += "?" + scope["query_string"].decode()
        request = client.build_request(scope["method"], url, headers=headers, content=b"".join(chunks))
        try:
            response = await client.send(request, stream=True)
            body = b"".join([chunk async for chunk in response.aiter_raw()])
            await response.aclose()
        except httpx.HTTPError as exc:
            log("backend_error", backend=target, error=str(exc))
            await respond(send, 502, json.dumps({"error": "backend", "message": str(exc)}).encode())
            return
        out = [
            (k.encode(), v.encode())
            for k, v in response.headers.multi_items()
            if k.lower() not in HOP_BY_HOP and k.lower() != "content-length"
        ]
        out.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": response.status_code, "headers": out})
        await send({"type": "http.response.body", "body": body})

    return app


def main() -> int:
    listen = os.environ.get("GATEWAY_LISTEN", "0.0.0.0:4566").split(",")[0]
    if listen.startswith(":"):
        listen = "0.0.0.0" + listen
    services = [s.strip() for s in os.environ.get("SERVICES", "kinesis,sns,sqs,dynamodb,cloudwatch").split(",")]
    print(
        "LocalStack STAND-IN (streamwreck): kinesis-local + moto behind one gateway, not LocalStack itself",
        file=sys.stderr,
        flush=True,
    )
    ports, processes = start_backends()
    config = Config()
    config.bind = [listen]
    config.accesslog = None
    config.keep_alive_timeout = 75
    shutdown = asyncio.Event()

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, shutdown.set)
        log("ready", listen=listen, services=services)
        await serve(make_app(ports, services), config, shutdown_trigger=shutdown.wait)  # type: ignore[arg-type]

    try:
        asyncio.run(run())
    finally:
        stop(processes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
