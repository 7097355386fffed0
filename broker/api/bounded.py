"""A map that forgets its oldest entries beyond a capacity: state keyed by callers' input stays bounded."""

from __future__ import annotations

from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """A dict of at most `capacity` entries; adding one more drops the oldest (insertion order).

    Oldest-first rather than least-recently-used: a lookup stays one dict read on the hit path, and an
    evicted entry that is still in use is simply computed again.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be 1 or more")
        self._capacity = capacity
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        entries = self._entries
        if key not in entries and len(entries) >= self._capacity:
            del entries[next(iter(entries))]
        entries[key] = value

    def __len__(self) -> int:
        return len(self._entries)
