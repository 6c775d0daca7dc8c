"""The reconcile API's endpoints."""

from __future__ import annotations

import secrets
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from streamwreck.api.body import read_body
from streamwreck.api.metrics import ApiMetrics
from streamwreck.api.reconcile import RequestProblem, parse_request, reconcile
from streamwreck.core.answers import ANSWER, EXAMPLE_SEQUENCE, Problem, ReconcileResponse
from streamwreck.core.errors import LedgerUnavailableError
from streamwreck.core.ledger import Ledger
from streamwreck.core.settings import ApiSettings


def get_settings(request: Request) -> ApiSettings:
    settings: ApiSettings = request.app.state.settings
    return settings


def get_ledger(request: Request) -> Ledger:
    ledger: Ledger = request.app.state.ledger
    return ledger


SettingsDep = Annotated[ApiSettings, Depends(get_settings)]
LedgerDep = Annotated[Ledger, Depends(get_ledger)]


def check_api_key(settings: SettingsDep, x_api_key: Annotated[str | None, Header()] = None) -> None:
    if settings.api_key and not secrets.compare_digest((x_api_key or "").encode(), settings.api_key.encode()):
        raise RequestProblem(401, "unauthorized", "a valid X-Api-Key header is required")


router = APIRouter()

_REQUEST_BODY = {
    "required": True,
    "description": "Either `{stream, records}` (records of one stream, any shards), or - the original shape - a bare "
    "array of sequence-number strings with `stream` and `shard_id` in the query.",
    "content": {
        "application/json": {
            "schema": {
                "oneOf": [
                    {"$ref": "#/components/schemas/ReconcileRequest"},
                    {
                        "type": "array",
                        "items": {"type": "string", "pattern": r"^(0|[1-9][0-9]{0,128})$"},
                        "description": "Sequence numbers of the shard named in the query (sub-sequence 0).",
                    },
                ]
            },
            "examples": {
                "records": {
                    "summary": "Records of one stream",
                    "value": {
                        "stream": "orders",
                        "records": [
                            {
                                "shard_id": "shardId-000000000000",
                                "sequence_number": EXAMPLE_SEQUENCE,
                                "sub_sequence_number": 0,
                            }
                        ],
                    },
                },
                "legacy": {
                    "summary": "Original shape: sequence numbers, stream and shard in the query",
                    "value": [EXAMPLE_SEQUENCE],
                },
            },
        }
    },
}

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "The server has an API key and the request's X-Api-Key is not it."},
    413: {
        "model": Problem,
        "description": "More records than the server's limit (default 10,000), or a body larger than its byte limit "
        "(default 4 MiB, refused before it is read in full): send batches.",
    },
    415: {"model": Problem, "description": "The body is not `application/json`."},
    422: {"model": Problem, "description": "A record or parameter is invalid; the message names its index."},
    503: {"model": Problem, "description": "The ledger (memcached) is unreachable: retry after `Retry-After`."},
}


@router.post(
    "/reconcile",
    response_model=ReconcileResponse,
    summary="Which of these records were not processed?",
    description="Looks every record up in the ledger and answers the ones with no entry (`unprocessed`) and the ones "
    "processed more than once (`duplicates`), with what the ledger can vouch for (`ledger`).",
    openapi_extra={"requestBody": _REQUEST_BODY},
    responses=_ERRORS,
    dependencies=[Depends(check_api_key)],
)
async def post_reconcile(
    request: Request,
    settings: SettingsDep,
    ledger: LedgerDep,
    stream: Annotated[str | None, Query(description="With an array body: the stream.", examples=["orders"])] = None,
    shard_id: Annotated[
        str | None, Query(description="With an array body: the shard.", examples=["shardId-000000000000"])
    ] = None,
) -> Response:
    raw = await read_body(request, settings.max_request_bytes)
    try:
        document = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:  # not JSON, not UTF-8, nested too deep, a number beyond 64 bits
        raise RequestProblem(422, "invalid_json", f"the body is not JSON: {str(exc)[:200]}") from None
    records = parse_request(document, stream, shard_id, settings.max_records_per_request)
    entries, health = await run_in_threadpool(_look_up, ledger, records)
    answer = reconcile(records, entries, health)
    metrics: ApiMetrics | None = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.answered(answer)
    return Response(ANSWER.dump_json(answer), media_type="application/json")


def _look_up(ledger: Ledger, records: list[Any]) -> tuple[Any, Any]:
    entries, health = ledger.lookup(records), ledger.health()
    if health.conflict:  # the recorder writes another format: every answer would be wrong, so give none
        raise LedgerUnavailableError(health.conflict)
    return entries, health


class Alive(BaseModel):
    status: Literal["ok"] = Field(description="Always `ok`: the process answers.", examples=["ok"])


class NodeState(BaseModel):
    server: str = Field(description="memcached node, host:port.", examples=["10.0.1.12:11211"])
    reachable: bool = Field(description="It answered `stats`.", examples=[True])
    evictions: int = Field(description="Entries it evicted for memory since it started.", examples=[0])


class Ready(BaseModel):
    ready: bool = Field(description="Every memcached node answered.", examples=[True])
    nodes: list[NodeState] = Field(description="Each node's state.")


@router.get("/healthz", summary="Alive", description="The process answers; says nothing of the ledger.")
def healthz() -> Alive:
    return Alive(status="ok")


@router.get(
    "/readyz",
    summary="Ready: the ledger is reachable",
    description="200 when every memcached node answers, else 503 with the state of each node.",
    response_model=Ready,
    responses={503: {"model": Ready, "description": "A memcached node does not answer."}},
)
async def readyz(ledger: LedgerDep) -> JSONResponse:
    health = await run_in_threadpool(ledger.health)
    body = {
        "ready": health.healthy,
        "nodes": [{"server": n.server, "reachable": n.reachable, "evictions": n.evictions} for n in health.nodes],
    }
    return JSONResponse(body, status_code=200 if health.healthy else 503)
