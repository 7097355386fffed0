"""An in-process map for values keyed by callers' input: every entry expires, and the map has a size cap.

Callers choose the keys (session ids, login states), so nothing they send may grow process memory without
bound: expired entries go when read and in a sweep every `capacity // 8` writes (amortised O(1) per write),
and past `capacity` the least recently used entry goes first.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMap(Generic[K, V]):
    def __init__(self, capacity: int, clock: Callable[[], datetime]) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._capacity = capacity
        self._clock = clock
        self._items: OrderedDict[K, tuple[V, datetime]] = OrderedDict()
        self._sweep_every = max(16, capacity // 8)
        self._writes = 0

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, key: K) -> V:
        """The entry as stored, expired or not (the caller compares times itself); KeyError if absent."""
        return self._items[key][0]

    def get(self, key: K) -> V | None:
        item = self._items.get(key)
        if item is None:
            return None
        if self._clock() >= item[1]:
            del self._items[key]
            return None
        self._items.move_to_end(key)
        return item[0]

    def put(self, key: K, value: V, until: datetime) -> None:
        self._items[key] = (value, until)
        self._items.move_to_end(key)
        self._writes += 1
        if self._writes >= self._sweep_every:
            self.sweep()
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def pop(self, key: K) -> V | None:
        value = self.get(key)
        self._items.pop(key, None)
        return value

    def drop(self, matches: Callable[[K], bool]) -> None:
        for key in [key for key in self._items if matches(key)]:
            del self._items[key]

    def sweep(self) -> int:
        """Removes every expired entry; returns how many went."""
        self._writes = 0
        now = self._clock()
        expired = [key for key, (_, until) in self._items.items() if now >= until]
        for key in expired:
            del self._items[key]
        return len(expired)
