"""Two-level cache for the hot path (fetch by name + label/version, then render).

- A **version stamp** per prompt name lives in the Django cache (`prompts:stamp:<name>`). Every save, label move,
  review change and delete replaces it — immediately (so the writing process and its transaction see the change)
  and again when the transaction commits (so no other process can cache what it read before the commit under the
  new stamp).
- **Resolved entries** (the version data a name+ref resolves to) are stored in the Django cache under the stamp,
  so other processes skip the database, and in a per-process dict together with the compiled templates, so this
  process also skips unpickling and compiling. An entry is used only while its stamp equals the current one:
  one cache GET per fetch decides freshness, whichever process wrote.

`PROMPT_CACHE_STAMP_TTL_MS` (default 0) lets a process trust its own entry for that long without the stamp GET:
faster with a networked cache (Redis), at the price of other processes' changes showing up to that many ms late.
Changes made in the same process are always seen at once. 0 = no stale reads anywhere.

While the cache is unreachable every fetch reads the database (a stamp that cannot be read is a fresh one nobody
else has, so nothing cached is trusted), and a change to a prompt is refused with 503 `SERVICE_UNAVAILABLE`: its
stamp could not be replaced, so other processes would go on serving the old version once the cache is back.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from agent_platform.cache_safe import cache_require, safe_cache

ENTRY_TIMEOUT_S = 24 * 3600
_LOCAL_MAX = 4096

_local: dict[tuple[str, str], list[Any]] = {}  # (name, ref) -> [stamp, value, checked_at]
_lock = threading.Lock()


def stamp_ttl_s() -> float:
    return settings.PROMPT_CACHE_STAMP_TTL_MS / 1000.0


def _new_stamp() -> int:
    # An int: Django's Redis cache stores it raw (no pickling on the hot path).
    return secrets.randbits(62)


def _stamp_key(name: str) -> str:
    return f"prompts:stamp:{name}"


def _entry_key(name: str, ref: str, stamp: int) -> str:
    return f"prompts:entry:{stamp}:{name}:{ref}"


_pending: set[str] = set()  # names whose after-commit stamp change did not reach the cache


def current_stamp(name: str) -> int:
    if _pending:
        _retry_pending()
    stamp = safe_cache.get(_stamp_key(name))
    if stamp is None:
        stamp = _new_stamp()
        if not safe_cache.add(_stamp_key(name), stamp, timeout=None):
            stamp = safe_cache.get(_stamp_key(name)) or stamp
    return stamp


def _drop_local(name: str) -> None:
    with _lock:
        for key in [k for k in _local if k[0] == name]:
            _local.pop(key, None)


def _bump(name: str) -> None:
    """Replace the stamp now; raises ServiceUnavailable when the cache is down (the change must not commit)."""
    try:
        cache_require(lambda: cache.set(_stamp_key(name), _new_stamp(), timeout=None), what="invalidating a prompt")
    finally:
        _drop_local(name)


def _bump_after_commit(name: str) -> None:
    # The change is committed: it cannot be refused any more. Its stamp was already replaced before the commit;
    # this second change (against a read racing the commit) is retried by the next fetch if the cache is down.
    if not safe_cache.set(_stamp_key(name), _new_stamp(), timeout=None):
        with _lock:
            _pending.add(name)
    _drop_local(name)


def _retry_pending() -> None:
    with _lock:
        names = list(_pending)
    for name in names:
        if safe_cache.set(_stamp_key(name), _new_stamp(), timeout=None):
            with _lock:
                _pending.discard(name)
        _drop_local(name)


_tx = threading.local()


def _in_transaction() -> bool:
    """Inside a real (not test-case wrapper) atomic block of the default connection."""
    blocks = transaction.get_connection().atomic_blocks
    return any(not getattr(block, "_from_testcase", False) for block in blocks)


def uncommitted(name: str) -> bool:
    """True while this thread is inside a transaction that changed `name`: such reads see uncommitted rows, so
    they must neither be served from nor written to the cache (a rollback would leave a phantom version there)."""
    dirty = getattr(_tx, "names", None)
    if not dirty:
        return False
    if not _in_transaction():
        dirty.clear()  # the transaction ended (committed or rolled back)
        return False
    return name in dirty


def invalidate(name: str) -> None:
    """Call on every change to a prompt: now, and again after the surrounding transaction commits."""
    _bump(name)
    if _in_transaction():
        if getattr(_tx, "names", None) is None:
            _tx.names = set()
        _tx.names.add(name)
    transaction.on_commit(lambda: _bump_after_commit(name))


def local_recent(name: str, ref: str) -> Any | None:
    """The in-process entry if it was validated within PROMPT_CACHE_STAMP_TTL_MS (never, with the default 0)."""
    ttl = stamp_ttl_s()
    if ttl <= 0:
        return None
    entry = _local.get((name, ref))
    if entry is not None and time.monotonic() - entry[2] < ttl:
        return entry[1]
    return None


def local_get(name: str, ref: str, stamp: int) -> Any | None:
    entry = _local.get((name, ref))
    if entry is not None and entry[0] == stamp:
        entry[2] = time.monotonic()
        return entry[1]
    return None


def local_put(name: str, ref: str, stamp: int, value: Any) -> None:
    with _lock:
        if len(_local) >= _LOCAL_MAX:
            _local.clear()
        _local[(name, ref)] = [stamp, value, time.monotonic()]


def shared_get(name: str, ref: str, stamp: int) -> Any | None:
    return safe_cache.get(_entry_key(name, ref, stamp))


def shared_put(name: str, ref: str, stamp: int, value: Any) -> None:
    safe_cache.set(_entry_key(name, ref, stamp), value, timeout=ENTRY_TIMEOUT_S)


def clear_local() -> None:
    with _lock:
        _local.clear()
