"""The checker engine: read every shard, reconcile with the ledger, judge each record, report.

A library: no argument parsing and no printing (``streamwreck.cli`` does both).
"""
