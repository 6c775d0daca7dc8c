"""Reading a request body defensively: the content type first, then at most ``limit`` bytes, never more.

A body over the limit is refused with 413 before it is parsed, or even held: a declared ``Content-Length`` over it
is refused without reading a byte, and a body sent without one (chunked) is read piece by piece and refused as soon
as it passes the limit.
"""

from __future__ import annotations

from fastapi import Request

from streamwreck.api.reconcile import RequestProblem

JSON_TYPES = ("application/json",)


def check_content_type(request: Request) -> None:
    """415 unless the body is declared JSON (``application/json`` or ``application/*+json``, any parameters)."""
    declared = request.headers.get("content-type", "")
    media = declared.split(";", 1)[0].strip().lower()
    if media in JSON_TYPES or (media.startswith("application/") and media.endswith("+json")):
        return
    shown = repr(declared[:80]) if declared else "none"
    raise RequestProblem(
        415, "unsupported_media_type", f"the body must be JSON with Content-Type: application/json (got {shown})"
    )


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, at most ``limit`` bytes; RequestProblem 415 or 413 (before parsing) otherwise."""
    check_content_type(request)
    declared = request.headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise _too_large(f"{int(declared):,} bytes", limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(f"more than {limit:,} bytes", limit)
        chunks.append(chunk)
    return b"".join(chunks)


def _too_large(size: str, limit: int) -> RequestProblem:
    # Not "the limit is N": the checker reads that phrase in a 413 as a number of records.
    return RequestProblem(
        413,
        "request_too_large",
        f"the body is {size}; at most {limit:,} bytes are accepted (STREAMWRECK_MAX_REQUEST_BYTES): send fewer "
        "records per request",
    )
