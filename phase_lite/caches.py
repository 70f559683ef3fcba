"""In-memory caches of what reads compute, valid for one database generation.

``db.generation()`` moves whenever the data a read shows may have changed (a commit in
this process, or another connection's, such as the admin command revoking a token; not a
bookkeeping commit such as a batch of read audit events or a token's last use). A
``GenerationCache`` holds entries of one generation only: the first use with a newer generation
empties it, and an entry computed under an older one is never stored. Entries live in process
memory only (which already holds the data keys), least recently used out past a count or a
total size.
"""

import threading
from collections import OrderedDict


class GenerationCache:
    """A bounded LRU map whose entries all belong to one database generation."""

    def __init__(self, max_entries: int, max_bytes: int | None = None,
                 max_entry_bytes: int | None = None, size=None, name: str = "other"):
        self.name = name  # what it holds, for the hit and miss counts (metrics)
        self.hits = 0
        self.misses = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes or max_bytes
        self._size = size  # value -> bytes it holds (needed with max_bytes)
        self._generation = -1
        self._items = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, generation: int, key):
        """The entry stored under ``key`` in this generation, or None."""
        with self._lock:
            if generation != self._generation:
                if generation > self._generation:
                    self._reset(generation)
                self.misses += 1
                return None
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, generation: int, key, value) -> None:
        """Keep ``value`` (computed from data read at ``generation`` or later)."""
        size = self._size(value) if self._size is not None else 0
        if self.max_entry_bytes is not None and size > self.max_entry_bytes:
            return  # rebuilt on every use rather than pushing everything else out
        with self._lock:
            if generation < self._generation:
                return
            if generation > self._generation:
                self._reset(generation)
            old = self._items.pop(key, None)
            if old is not None and self._size is not None:
                self._bytes -= self._size(old)
            self._items[key] = value
            self._bytes += size
            while len(self._items) > self.max_entries or (
                    self.max_bytes is not None and self._bytes > self.max_bytes):
                _, evicted = self._items.popitem(last=False)
                if self._size is not None:
                    self._bytes -= self._size(evicted)

    def _reset(self, generation):
        self._generation = generation
        self._items.clear()
        self._bytes = 0

    def __len__(self):
        return len(self._items)


def cache_statistics(caches) -> dict[str, tuple[int, int]]:
    """{cache name: (hits, misses)} summed over ``caches`` by name."""
    totals = {}
    for cache in caches:
        hits, misses = totals.get(cache.name, (0, 0))
        totals[cache.name] = (hits + cache.hits, misses + cache.misses)
    return totals


def kept_bytes(encoded: bytes) -> bytes:
    """A copy of ``encoded`` that takes only its own length in memory.

    orjson's output keeps the buffer it grew while encoding (4 KB for a 200-byte object):
    anything kept for long, such as a cached answer or a secret's encoded object, is copied.
    """
    return bytes(memoryview(encoded))
