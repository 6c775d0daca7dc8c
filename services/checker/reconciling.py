"""Asking the reconcile API about the records as they are read: batches, pipelined, bounded.

Readers hand their pages to :class:`Pipeline`, which cuts batches of ``batch_size`` records (records of any shards
of the stream) and posts each to ``POST /reconcile`` on a small pool of HTTP workers. At most ``depth`` batches
are in flight; a reader that would exceed that waits, so memory stays bounded however long the stream. The API's
errors become one line (:class:`ApiError`): unreachable, refused key, ledger unavailable after its Retry-After.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from streamwreck.checker.reading import UserRecord
from streamwreck.checker.tally import RecordKey, key_of
from streamwreck.checker.verdict import LedgerView
from streamwreck.core.answers import ANSWER, LEDGER, ReconcileResponse, RecordRef
from streamwreck.core.errors import ApiError, StreamwreckError

CONNECT_ATTEMPTS = 4  # connection refused or reset: 0.25 s, 0.5 s, 1 s apart
UNAVAILABLE_ATTEMPTS = 7  # 503 (memcached down): honouring Retry-After, capped at MAX_RETRY_AFTER
MAX_RETRY_AFTER = 10.0


@dataclass(frozen=True)
class Answer:
    unprocessed: frozenset[RecordKey]
    duplicates: dict[RecordKey, int]  # records processed more than once -> how many times
    ledger: dict[str, Any]  # the API's ledger object, as it said it (for the report)
    received_at: float  # Unix seconds: the moment the evidence is from
    view: LedgerView  # the ledger object, checked and parsed
    unreadable: frozenset[RecordKey] = frozenset()  # records whose ledger data could not be read

    def count(self, key: RecordKey) -> int:
        """How many processed events the ledger holds for a record of the batch asked about."""
        if key in self.unprocessed or key in self.unreadable:
            return 0
        return self.duplicates.get(key, 1)


class ReconcileApi:
    """A client of ``POST /reconcile``. ``transport`` is httpx's seam (tests may pass a MockTransport)."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout: float = 60.0,
        max_connections: int = 8,
        transport: Any = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/")
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            headers["X-Api-Key"] = api_key
        self._httpx = httpx
        self._client = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=5.0),
            verify=self.base_url.startswith("https://"),  # plain http needs no CA bundle (loading it costs 60 ms)
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )
        self._sleep = sleep
        self._clock = clock
        self._limit: int | None = None  # records per request, once the server said 413

    def close(self) -> None:
        self._client.close()

    def reconcile(self, stream: str, records: Sequence[UserRecord]) -> Answer:
        """The API's answer for ``records``. A batch over the server's limit (413) is asked in parts, and later
        batches are cut to the limit the server named (or the size that last worked)."""
        limit = self._limit
        if limit is not None and len(records) > limit:
            parts = [self.reconcile(stream, records[i : i + limit]) for i in range(0, len(records), limit)]
            return _merge(parts)
        response = self._post(stream, records)
        if isinstance(response, _TooMany):
            if len(records) < 2:
                raise ApiError("the reconcile API refuses even a single record as too many (413)")
            self._limit = min(response.limit or len(records) // 2, len(records) - 1)
            return self.reconcile(stream, records)
        return self._answer(response, records)

    def _body(self, stream: str, records: Sequence[UserRecord]) -> bytes:
        # Built by hand: shard ids are [A-Za-z0-9_.-] and sequence numbers digits (validated by the API anyway),
        # and this is several times faster than json.dumps of 10,000 dicts.
        items = ",".join(
            f'{{"shard_id":"{r.shard_id}","sequence_number":"{r.sequence_number}","sub_sequence_number":'
            f"{r.sub_sequence_number}}}"
            for r in records
        )
        return f'{{"stream":{json.dumps(stream)},"records":[{items}]}}'.encode()

    def _post(self, stream: str, records: Sequence[UserRecord]) -> bytes | _TooMany:
        httpx = self._httpx
        body = self._body(stream, records)
        connect_failures = unavailable = server_errors = 0
        while True:
            try:
                response = self._client.post("/reconcile", content=body)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                connect_failures += 1
                if connect_failures >= CONNECT_ATTEMPTS:
                    raise ApiError(
                        f"the reconcile API at {self.base_url} is unreachable ({_reason(exc)}): start it with "
                        "'streamwreck api', or point --endpoint (or STREAMWRECK_API_URL) at it"
                    ) from None
                self._sleep(0.25 * 2 ** (connect_failures - 1))
                continue
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                server_errors += 1
                if server_errors >= CONNECT_ATTEMPTS:
                    raise ApiError(f"the reconcile API at {self.base_url} stopped answering ({_reason(exc)})") from None
                self._sleep(0.25 * 2 ** (server_errors - 1))
                continue
            status = response.status_code
            if status == 200:
                return response.content
            if status == 413:
                match = re.search(r"limit is (\d+)", _message(response))
                return _TooMany(int(match.group(1)) if match and int(match.group(1)) > 0 else None)
            if status == 503:
                unavailable += 1
                if unavailable >= UNAVAILABLE_ATTEMPTS:
                    raise ApiError(f"the ledger behind {self.base_url} is unavailable: {_message(response)}")
                self._sleep(_retry_after(response, unavailable))
                continue
            if status >= 500:
                server_errors += 1
                if server_errors >= CONNECT_ATTEMPTS:
                    raise ApiError(f"the reconcile API at {self.base_url} failed ({status}): {_message(response)}")
                self._sleep(0.25 * 2 ** (server_errors - 1))
                continue
            if status in (401, 403):
                raise ApiError(
                    f"the reconcile API at {self.base_url} refused the API key ({status}): pass --api-key or set "
                    "STREAMWRECK_API_KEY"
                )
            if status == 404:
                raise ApiError(f"{self.base_url}/reconcile does not exist (404): is --endpoint the streamwreck API?")
            raise ApiError(f"the reconcile API at {self.base_url} rejected a batch ({status}): {_message(response)}")

    def _answer(self, body: bytes, records: Sequence[UserRecord]) -> Answer:
        """The answer, validated with the API's own answer type (:data:`ANSWER`) and checked against the batch it
        answers: every record counted, none it was not asked about."""
        try:
            answer = ANSWER.validate_json(body, strict=True)
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            if first["type"] == "json_invalid":
                raise ApiError(f"{self.base_url}/reconcile answered 200 with a body that is not JSON") from None
            where = ".".join(str(part) for part in first["loc"]) or "the answer"
            shown = repr(first["input"])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            detail = f"{where}: {first['msg']}, got {shown}"
            raise ApiError(f"{self.base_url}/reconcile answered in an unexpected shape: {detail}") from None
        try:
            return _fit(answer, records, self._clock())
        except ValueError as exc:
            raise ApiError(f"{self.base_url}/reconcile answered in an unexpected shape: {exc}") from None


def _fit(answer: ReconcileResponse, records: Sequence[UserRecord], received_at: float) -> Answer:
    """The answer as the checker uses it; ValueError when it does not answer this batch."""
    if answer["checked"] != len(records):
        raise ValueError(f"checked is {answer['checked']!r} for a batch of {len(records)} records")
    asked = {key_of(record) for record in records}

    def key(item: RecordRef, field: str) -> RecordKey:
        found = (item["shard_id"], item["sequence_number"], item["sub_sequence_number"])
        if found not in asked:
            raise ValueError(f"{field} names {found[0]} {found[1]}/{found[2]}, which the batch did not ask about")
        return found

    unprocessed = frozenset(key(item, "unprocessed") for item in answer["unprocessed"])
    duplicates: dict[RecordKey, int] = {}
    for duplicate in answer["duplicates"]:
        found = key(duplicate, "duplicates")
        if found in unprocessed:
            raise ValueError(f"{found[0]} {found[1]}/{found[2]} is both unprocessed and a duplicate")
        duplicates[found] = duplicate["count"]
    unreadable = frozenset(key(item, "unreadable") for item in answer.get("unreadable", []))
    both = unreadable & (unprocessed | duplicates.keys())
    if both:
        first = min(both)
        raise ValueError(f"{first[0]} {first[1]}/{first[2]} is both unreadable and unprocessed or a duplicate")
    ledger = answer["ledger"]
    said: dict[str, Any] = LEDGER.dump_python(ledger, mode="json")
    return Answer(unprocessed, duplicates, said, received_at, LedgerView.from_status(ledger), unreadable)


@dataclass(frozen=True)
class _TooMany:
    limit: int | None  # as the server's message names it


def _merge(parts: Sequence[Answer]) -> Answer:
    """One answer for a batch asked in parts; its ledger view vouches for no more than the weakest part's."""
    duplicates: dict[RecordKey, int] = {}
    for part in parts:
        duplicates.update(part.duplicates)
    views = [part.view for part in parts]
    starts = [view.started_at for view in views]
    flushes = [view.flushes for view in views]
    view = LedgerView(
        healthy=all(view.healthy for view in views),
        evictions=max(view.evictions for view in views),
        started_at=None if None in starts else max(start for start in starts if start is not None),
        ttl_seconds=min(view.ttl_seconds for view in views),
        flushes=None if None in flushes else max(flush for flush in flushes if flush is not None),
    )
    return Answer(
        frozenset().union(*(part.unprocessed for part in parts)),
        duplicates,
        parts[-1].ledger,
        parts[-1].received_at,
        view,
        frozenset().union(*(part.unreadable for part in parts)),
    )


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    if "Connection refused" in text or "ECONNREFUSED" in text:
        return "connection refused"
    return text or type(exc).__name__


def _message(response: Any) -> str:
    try:
        body = response.json()
        if isinstance(body, dict) and body.get("message"):
            return str(body["message"])
    except ValueError:
        pass
    return (response.text or "").strip()[:200] or f"HTTP {response.status_code}"


def _retry_after(response: Any, attempt: int) -> float:
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        seconds = float(2**attempt)
    return max(0.1, min(MAX_RETRY_AFTER, seconds))


class Pipeline:
    """Cuts batches from the records readers add and reconciles them on ``depth`` HTTP workers."""

    def __init__(
        self,
        api: ReconcileApi,
        stream: str,
        batch_size: int,
        depth: int,
        on_answer: Callable[[Sequence[UserRecord], Answer], None],
        stop: threading.Event,
    ) -> None:
        self._api = api
        self._stream = stream
        self._batch_size = batch_size
        self._on_answer = on_answer
        self._stop = stop
        self._lock = threading.Lock()
        self._pending: list[UserRecord] = []
        self._slots = threading.BoundedSemaphore(depth)
        self._pool = ThreadPoolExecutor(max_workers=depth, thread_name_prefix="reconcile")
        self._futures: set[Future[None]] = set()
        self._error: BaseException | None = None
        self.sent = 0

    def add(self, records: Sequence[UserRecord]) -> None:
        """Called by readers; blocks while ``depth`` batches are in flight; raises the pipeline's first error."""
        self._raise_error()
        batches = []
        with self._lock:
            self._pending.extend(records)
            while len(self._pending) >= self._batch_size:
                batches.append(self._pending[: self._batch_size])
                del self._pending[: self._batch_size]
        for batch in batches:
            self._submit(batch)

    def flush(self) -> None:
        """Send the records waiting for a full batch now (a shard is done: no reason to hold them back)."""
        self._raise_error()
        with self._lock:
            rest, self._pending = self._pending, []
        if rest:
            self._submit(rest)

    def finish(self) -> None:
        """Send what is left and wait for every answer."""
        self.flush()
        for future in list(self._futures):
            future.result()
        self._pool.shutdown(wait=True)
        self._raise_error()

    @property
    def error(self) -> BaseException | None:
        """The first failure of a batch, if any: the root cause when readers stop."""
        return self._error

    def abort(self) -> None:
        self._stop.set()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _submit(self, batch: list[UserRecord]) -> None:
        while not self._slots.acquire(timeout=0.2):
            self._raise_error()
            if self._stop.is_set():
                raise _Stopped
        future = self._pool.submit(self._run, batch)
        with self._lock:
            self._futures.add(future)
        future.add_done_callback(self._forget)

    def _forget(self, future: Future[None]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _run(self, batch: list[UserRecord]) -> None:
        try:
            if self._error is None:
                answer = self._api.reconcile(self._stream, batch)
                self._on_answer(batch, answer)
                with self._lock:
                    self.sent += len(batch)
        except BaseException as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
            self._stop.set()
        finally:
            self._slots.release()


class _Stopped(StreamwreckError):
    """The check is stopping (another part failed): the reader gives up quietly."""

    def __init__(self) -> None:
        super().__init__("stopped")
