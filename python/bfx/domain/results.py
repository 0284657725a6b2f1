"""The result cache: invocation results by (substrate id, canonical parameters).

Invocations are pure (the sandbox admits no clock, randomness or I/O) and a substrate's
id is the hash of its content, so a result depends on the id and the parameters alone:
a substrate deleted and created again under the same id computes the same results. What
must never happen is serving a result for a substrate that is gone; the caller checks
the arena before every lookup (:meth:`bfx.domain.substrates.Substrates.invoke`), which
also covers deletions made by another worker or node and applied from the change log.

The cache is an LRU bounded in bytes: each entry is charged its key, its result's JSON
size and a fixed overhead (:data:`ENTRY_OVERHEAD`); an entry larger than an eighth of the
cache is not kept, so one huge result cannot flush everything else. Only plain JSON
parameters are cached (dicts with str keys, lists, str, int, finite floats, bool, None,
at most :data:`MAX_KEY_DEPTH` deep): a tuple or a NaN from an in-process caller would make
two different inputs share one key, so such calls simply bypass the cache.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import msgspec

__all__ = ["ENTRY_OVERHEAD", "MAX_KEY_DEPTH", "MISS", "ResultCache", "canonical_parameters"]

#: Bytes charged per entry beyond its key and result: the dict slot, the key tuple, the
#: bytes objects and the per-identity index (measured with sys.getsizeof, rounded up).
ENTRY_OVERHEAD = 200
#: Parameters nested deeper than this are not cached (HTTP bodies stop at 32 anyway).
MAX_KEY_DEPTH = 32

_encode = msgspec.json.Encoder(order="sorted").encode
_decode = msgspec.json.decode
_SCALARS = (str, int, bool, type(None))


class _Miss:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISS"


#: What :meth:`ResultCache.get` answers when it holds nothing for the key.
MISS: Any = _Miss()


def _plain(value: Any, depth: int) -> bool:
    t = type(value)
    if t in _SCALARS:
        return True
    if t is float:
        return value - value == 0.0  # finite: NaN and inf would encode as null
    if depth >= MAX_KEY_DEPTH:
        return False
    if t is list:
        return all(_plain(v, depth + 1) for v in value)
    if t is dict:
        return all(type(k) is str and _plain(v, depth + 1) for k, v in value.items())
    return False


def canonical_parameters(parameters: Mapping[str, Any] | None) -> bytes | None:
    """Sorted-key compact JSON of plain parameters (None and ``{}`` alike: ``b"{}"``),
    or None when they are not plain JSON (then the call is not cached)."""
    if not parameters:
        return b"{}"
    if type(parameters) is not dict or not _plain(parameters, 0):
        return None
    try:
        return _encode(parameters)
    except (msgspec.EncodeError, UnicodeEncodeError):  # a lone surrogate
        return None


class ResultCache:
    """A byte-bounded LRU of results, with hit and miss counters. Thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("result cache size must be at least 1 byte")
        self.max_bytes = max_bytes
        self._max_entry = max(1, max_bytes // 8)
        # key -> (result, encoded-or-None, charged bytes); containers are kept encoded
        # and decoded on a hit, so a caller mutating its answer cannot poison the cache.
        self._items: OrderedDict[tuple[int, bytes], tuple[Any, bool, int]] = OrderedDict()
        self._by_id: dict[int, set[bytes]] = {}
        self._lock = threading.Lock()
        self.bytes = 0
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, identity: int, params: bytes) -> Any:
        """The cached result, or :data:`MISS` (counted either way)."""
        lock = self._lock
        lock.acquire()
        try:
            entry = self._items.get((identity, params))
            if entry is None:
                self.misses += 1
                return MISS
            self._items.move_to_end((identity, params))
            self.hits += 1
        finally:
            lock.release()
        value, encoded, _ = entry
        return _decode(value) if encoded else value

    def put(self, identity: int, params: bytes, result: Any) -> None:
        if type(result) in (list, dict):
            try:
                stored: Any = _encode(result)
            except (msgspec.EncodeError, UnicodeEncodeError):
                return
            encoded, size = True, len(stored)
        else:
            stored, encoded = result, False
            try:
                size = len(result.encode("utf-8")) if type(result) is str else 24
            except UnicodeEncodeError:
                return
        charge = len(params) + size + ENTRY_OVERHEAD
        if charge > self._max_entry:
            return
        key = (identity, params)
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self.bytes -= old[2]
            self._items[key] = (stored, encoded, charge)
            self._by_id.setdefault(identity, set()).add(params)
            self.bytes += charge
            while self.bytes > self.max_bytes:
                (gone_id, gone_params), (_, _, gone_charge) = self._items.popitem(last=False)
                self.bytes -= gone_charge
                keys = self._by_id.get(gone_id)
                if keys is not None:
                    keys.discard(gone_params)
                    if not keys:
                        del self._by_id[gone_id]

    def discard(self, identity: int) -> None:
        """Drops every result of a substrate (deleted, or found cheap after all)."""
        with self._lock:
            for params in self._by_id.pop(identity, ()):
                entry = self._items.pop((identity, params), None)
                if entry is not None:
                    self.bytes -= entry[2]

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self.bytes,
                "max_bytes": self.max_bytes,
                "hits": self.hits,
                "misses": self.misses,
            }
