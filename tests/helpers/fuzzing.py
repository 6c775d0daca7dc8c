"""Fuzz every operation of an OpenAPI schema (schemathesis) with a bounded number of cases: half valid requests,
half invalid. Used in-process (ASGI, tests/unit) and against a real ``streamwreck api`` (tests/integration).

Driven through Hypothesis directly rather than schemathesis' pytest plugin, which does not run under pytest 9."""

from __future__ import annotations

from collections import Counter
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


def fuzz(schema: schemathesis.BaseSchema, examples: int, **call: Any) -> Counter[str]:
    """Run up to ``examples`` valid and ``examples`` invalid cases against every operation (fewer where there are
    not that many distinct ones: ``GET /healthz`` has one); the failures raise, with the case to reproduce. Returns
    the number of cases and of 5xx answers per operation."""
    seen: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=examples,
                deadline=None,
                suppress_health_check=list(HealthCheck),
                derandomize=True,
                database=None,
            )
            def run(case: schemathesis.Case) -> None:
                response = case.call_and_validate(checks=CHECKS, **call)
                seen[case.operation.label] += 1
                if response.status_code >= 500:
                    seen[f"5xx {case.operation.label}"] += 1

            try:
                run()
            except Unsatisfiable:
                if mode is GenerationMode.POSITIVE:
                    raise  # an operation without parameters or body has no invalid requests; every one has valid ones
    return seen
