"""The checker engine: read every shard, reconcile with the ledger, judge each record, report.

A library: no argument parsing and no printing (``streamwreck.cli`` does both). The modules, in the order a check
uses them: ``reading`` (shards, limits, iterators, de-aggregation by ``aggregation``), ``leases`` (the consumer's KCL
checkpoints), ``reconciling`` (the reconcile API, batched and pipelined while reading), ``verdict`` (the pure rules),
``tally`` (running totals), ``check`` (one run, start to end), ``report`` (the document) and its renderers
``render_text`` and ``render_html``, ``remediation`` (export, redrive).

The defaults below are here, not in ``check``, so that ``--help`` can say them without importing the engine.
"""

DEFAULT_GRACE = 60.0  # seconds: younger records are in_flight
DEFAULT_SETTLE = 5.0  # seconds between the evidence and the second look at the lost
DEFAULT_BATCH = 2500  # records per reconcile request
DEFAULT_CONCURRENCY = 8  # shards read at once
MAX_BATCH = 10_000
PIPELINE_DEPTH = 4  # reconcile requests in flight at once
