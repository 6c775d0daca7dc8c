"""``create_app(settings)``: the reconcile API as a FastAPI application."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from pydantic import TypeAdapter
from starlette.exceptions import HTTPException as StarletteHTTPException

from streamwreck.api.metrics import CONTENT_TYPE, ApiMetrics, MetricsMiddleware
from streamwreck.api.reconcile import RequestProblem
from streamwreck.api.routes import router
from streamwreck.core.answers import ReconcileRequest
from streamwreck.core.errors import RejectedInputError, TransientError
from streamwreck.core.ledger import Ledger, open_ledger
from streamwreck.core.settings import ApiSettings

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5

DESCRIPTION = """\
Answers which Kinesis records have no entry in the streamwreck ledger, that is, were never reported processed.

A record is identified by stream, shard id, sequence number and sub-sequence number (KPL aggregation); sequence
numbers are unique only within a shard. memcached evicts and forgets on restart, so a missing entry is proof of loss
only when `ledger` shows no evictions, a start before the record was written, and a TTL longer than its age: the
`streamwreck check` command applies exactly that rule.
"""


def create_app(settings: ApiSettings, ledger: Ledger | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.ledger = ledger or open_ledger(settings)
        try:
            yield
        finally:
            if ledger is None:
                app.state.ledger.close()

    app = FastAPI(title="streamwreck reconcile API", version="1", description=DESCRIPTION, lifespan=lifespan)
    app.state.settings = settings
    app.state.ledger = ledger
    app.state.metrics = metrics = ApiMetrics()
    app.add_middleware(MetricsMiddleware, metrics=metrics)
    app.include_router(router)

    @app.get("/metrics", include_in_schema=False)
    def _metrics() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.exception_handler(RequestProblem)
    async def _problem(request: Request, exc: RequestProblem) -> JSONResponse:
        return JSONResponse(exc.problem.model_dump(exclude_none=True), status_code=exc.status)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed"}
        return JSONResponse(
            {"error": codes.get(exc.status_code, f"http_{exc.status_code}"), "message": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        first = errors[0]
        message = f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}"
        return JSONResponse({"error": "invalid_request", "message": message, "detail": errors}, status_code=422)

    @app.exception_handler(TransientError)
    async def _transient(request: Request, exc: TransientError) -> JSONResponse:
        logger.warning("request_failed_transient", extra={"path": request.url.path, "error": str(exc)})
        return JSONResponse(
            {"error": "ledger_unavailable", "message": str(exc)},
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(RejectedInputError)
    async def _rejected(request: Request, exc: RejectedInputError) -> JSONResponse:
        return JSONResponse({"error": "rejected", "message": str(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("request_failed", extra={"path": request.url.path})
        return JSONResponse({"error": "internal", "message": "internal error; see the server's log"}, status_code=500)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            request_schema = TypeAdapter(ReconcileRequest).json_schema(ref_template="#/components/schemas/{model}")
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for name, definition in request_schema.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components["ReconcileRequest"] = request_schema
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def serve(settings: ApiSettings) -> int:
    """``streamwreck api``: run the API under uvicorn until SIGTERM/SIGINT; with ``api_workers`` > 1, that many
    worker processes, each building its app from the environment (:func:`app_from_environment`)."""
    import uvicorn

    uvicorn.run(
        create_app(settings) if settings.api_workers == 1 else "streamwreck.api.app:app_from_environment",
        factory=settings.api_workers > 1,
        workers=settings.api_workers,
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    return 0


def app_from_environment() -> FastAPI:
    """One worker's app (uvicorn calls it in each worker process): settings and logging from the environment."""
    from streamwreck.core import logs
    from streamwreck.core.settings import load_settings

    settings = load_settings(ApiSettings)
    logs.configure(settings.log_level)
    return create_app(settings)
