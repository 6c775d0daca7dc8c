"""Cutting a sequence into AWS batch requests bounded by entries and bytes (PublishBatch, PutRecords, ...)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def batched(items: Iterable[T], max_entries: int, max_bytes: int, size_of: Callable[[T], int]) -> Iterator[list[T]]:
    """Consecutive batches of at most ``max_entries`` items and ``max_bytes`` (by ``size_of``); an item larger than
    ``max_bytes`` alone is a batch of its own (the service then says what is wrong with it)."""
    batch: list[T] = []
    size = 0
    for item in items:
        item_size = size_of(item)
        if batch and (len(batch) >= max_entries or size + item_size > max_bytes):
            yield batch
            batch, size = [], 0
        batch.append(item)
        size += item_size
    if batch:
        yield batch
