"""Prometheus metrics of many short-lived processes served by one long-lived one: the KCL consumers' (the processor's
and the watcher's) record processors, merged and served by their launcher.

**Why.** The MultiLangDaemon runs one record processor *process* per shard lease, and they come and go with the
leases. They record their figures with prometheus_client's multiprocess mode: each writes its samples to small
memory-mapped files in one folder (:data:`MULTIPROC_VARIABLE`, a fresh temporary folder per launch, handed down
through the daemon's environment so that it is set before prometheus_client is first imported), and the launcher —
the one long-lived process, which holds the metrics port — serves ``/metrics`` by merging those files
(``MultiProcessCollector``). It needs no socket, no aggregator process and no protocol of ours between the per-shard
processes and the server: a record processor that dies mid-write leaves its last values, counters from dead processes
keep counting in the totals (a scrape never sees a counter go backwards when a lease moves), and per-shard gauges are
"live" gauges (``multiprocess_mode="livesum"``, ``"livemax"``), whose files the launcher removes once their process
has exited (:func:`forget_dead`, at every read), so a shard that moved to another process or worker is not counted
twice.

prometheus_client is imported where it is used, not here: ``core`` needs only boto3 and pydantic.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

MULTIPROC_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"  # prometheus_client's own: read by it in each record processor

# An answer of a route: status, content type, body.
Answer = tuple[int, str, bytes]


def forget_dead(folder: Path, alive: Callable[[int], bool] | None = None) -> None:
    """Remove the live gauges of processes that have exited (their shards are counted elsewhere now)."""
    from prometheus_client import multiprocess

    alive = alive or _alive
    for path in folder.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), str(folder))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Merged:
    """The metrics of every process that wrote to ``folder``, merged: the registry ``/metrics`` serves."""

    def __init__(self, folder: Path, alive: Callable[[int], bool] | None = None) -> None:
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        self.folder = folder
        self.registry = CollectorRegistry()
        MultiProcessCollector(self.registry, path=str(folder))
        self._alive = alive
        self._lock = threading.Lock()

    def collect(self) -> list[Any]:
        """The merged metric families (prometheus_client's ``Metric``), dead processes' live gauges left out."""
        with self._lock:
            forget_dead(self.folder, self._alive)
            return list(self.registry.collect())

    def exposition(self) -> bytes:
        """The merge in Prometheus text format."""
        from prometheus_client import generate_latest

        with self._lock:
            forget_dead(self.folder, self._alive)
            return bytes(generate_latest(self.registry))


class MetricsServer(ThreadingHTTPServer):
    """``GET /metrics`` (the merge, Prometheus text format) and the caller's own ``routes``, served from a thread.
    Binding happens in the constructor: a port in use raises OSError there."""

    daemon_threads = True

    def __init__(
        self,
        host: str,
        port: int,
        merged: Merged,
        routes: Mapping[str, Callable[[], Answer]] | None = None,
        name: str = "metrics",
    ) -> None:
        self.merged = merged
        self.routes: dict[str, Callable[[], Answer]] = {"/metrics": self._metrics, **(routes or {})}
        super().__init__((host, port), _Handler)
        self.thread = threading.Thread(target=self.serve_forever, name=name, daemon=True)

    def start(self) -> Self:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()

    @property
    def url(self) -> str:
        """Where it answers (``http://host:port``; 127.0.0.1 for a wildcard address)."""
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else host
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    def _metrics(self) -> Answer:
        from prometheus_client import CONTENT_TYPE_LATEST

        return 200, CONTENT_TYPE_LATEST, self.merged.exposition()


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer

    def do_GET(self) -> None:
        route = self.server.routes.get(self.path.split("?", 1)[0])
        if route is None:
            message = "try " + " or ".join(self.server.routes)
            self._answer(404, "application/json", json.dumps({"error": "not_found", "message": message}).encode())
        else:
            self._answer(*route())

    def _answer(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not worth a log line each
        pass
