"""``streamwreck watch``: a continuous verdict on a stream, as its own KCL application.

The watcher is a KCL consumer like the audited one, run under the same MultiLangDaemon (so watcher processes share
the shards, take over the leases of one that dies, and follow splits and merges parent before child). Its record
processor judges each record with the checker engine's rules (:func:`streamwreck.checker.verdict.judge`) once the
audited consumer's checkpoint has passed it or it is older than the grace period. The modules:

- ``shard``: pure; the records of one shard held until they can be judged, the consumer's checkpoints as read,
  which records are due, and what to checkpoint;
- ``evidence``: the consumer's lease on a shard (DynamoDB) and the stream's retention (Kinesis);
- ``reports``: each lost record as a JSON line (``--export``) and on an SNS topic;
- ``metrics``: the Prometheus metrics of every record processor, aggregated for ``/metrics``, ``/healthz`` and the
  terminal table, and CloudWatch Embedded Metric Format lines;
- ``record_processor``: the amazon-kclpy record processor the daemon runs per shard lease;
- ``launcher``: the daemon's plan and run, beside the metrics server.
"""
