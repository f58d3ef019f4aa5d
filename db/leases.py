"""Leases: at most one live process does a given run (or sweep) in one database at a time.

    from autointerp.db.leases import LeaseHeld, acquire_lease

    try:
        with acquire_lease("autointerp.db", "run:3f2a9c", ttl_s=60) as lease:   # a heartbeat thread keeps it
            for unit in todo:
                if lease.lost:                     # another process took it over: stop before doing more
                    break
                ...
    except LeaseHeld as e:
        print(f"already being done by {e.info.describe()}")

A lease is a row of the ``leases`` table: its name, a holder (a uuid4 per acquisition), the pid and host of the
holder, and when it was acquired, last renewed and when it expires. Acquiring is one ``BEGIN IMMEDIATE``
transaction (read the row, take it if it is free, expired, or held by a process of this host that no longer exists;
else leave it), so two processes racing for a free lease cannot both win. A daemon thread renews the lease every
``ttl_s / 3`` seconds on its own connection; a renewal that finds the row gone or held by another holder marks the
lease ``lost``, and the work loop stops. A process killed with SIGKILL leaves its row behind: on the same host it is
taken over at once (its pid is gone), on another host after ``expires_at``. Clocks of different hosts sharing one
database must agree to well within ``ttl_s``.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from autointerp.db.values import utc_iso
from autointerp.errors import UsageError

DEFAULT_TTL_S = 60.0
BUSY_TIMEOUT_S = 5.0  # how long a statement waits for another writer before giving up (as ``open_db``)


@dataclass(frozen=True)
class LeaseInfo:
    """One row of ``leases``: who holds ``name`` and until when (times are ISO-8601 UTC)."""

    name: str
    holder: str
    pid: int
    host: str
    acquired_at: str
    heartbeat_at: str
    expires_at: str

    def describe(self) -> str:
        return (f"pid {self.pid} on {self.host} (since {self.acquired_at[:19]}Z, last heartbeat "
                f"{self.heartbeat_at[:19]}Z, expires {self.expires_at[:19]}Z)")

    def expired(self, now: datetime | None = None) -> bool:
        return (now or datetime.now(timezone.utc)) >= datetime.fromisoformat(self.expires_at)

    def holder_gone(self) -> bool:
        """True when the holder ran on this host and its process no longer exists (killed, crashed)."""
        return self.host == socket.gethostname() and not _pid_alive(self.pid)

    def seconds_held(self) -> float:
        """From acquisition to the last heartbeat: how long the holder is known to have worked."""
        return (datetime.fromisoformat(self.heartbeat_at) - datetime.fromisoformat(self.acquired_at)).total_seconds()


class LeaseHeld(Exception):
    """Another live process holds the lease: not an error, the caller says who and stops (exit 0) or waits."""

    def __init__(self, info: LeaseInfo):
        super().__init__(f"{info.name} is held by {info.describe()}")
        self.info = info


class Lease:
    """A lease this process holds; renewed by a daemon thread until ``release()`` (or the ``with`` block ends).

    ``previous``: the stale lease this one took over (its holder was killed or expired), else None."""

    def __init__(self, path: Path, info: LeaseInfo, ttl_s: float, previous: LeaseInfo | None):
        self.path, self.info, self.ttl_s, self.previous = path, info, ttl_s, previous
        self._lost = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._heartbeat, name=f"lease {info.name}", daemon=True)
        self._thread.start()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def lost(self) -> bool:
        """True once a renewal found the lease taken by another process: do no more work under it."""
        return self._lost.is_set()

    def release(self) -> None:
        """Stop renewing and delete the row (only if this holder still has it). Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join(timeout=self.ttl_s)
        with closing(_connect(self.path)) as conn:
            _retry_busy(lambda: conn.execute("DELETE FROM leases WHERE name = ? AND holder = ?",
                                             [self.info.name, self.info.holder]))

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def _heartbeat(self) -> None:
        conn = _connect(self.path)
        try:
            while not self._stop.wait(self.ttl_s / 3):
                now = datetime.now(timezone.utc)
                try:
                    cur = conn.execute(
                        "UPDATE leases SET heartbeat_at = ?, expires_at = ? WHERE name = ? AND holder = ?",
                        [utc_iso(now), utc_iso(now + timedelta(seconds=self.ttl_s)), self.info.name, self.info.holder])
                except sqlite3.OperationalError:  # busy for longer than the timeout: try again next beat
                    continue
                if cur.rowcount != 1:
                    self._lost.set()
                    return
        finally:
            conn.close()


def acquire_lease(
    path: str | Path,
    name: str,
    ttl_s: float = DEFAULT_TTL_S,
    wait: bool = False,
    poll_s: float = 1.0,
    on_wait: Callable[[LeaseInfo], None] | None = None,
) -> Lease:
    """Take the lease ``name`` in the database at ``path`` (which must have the ``leases`` table).

    When another live process holds it: raise ``LeaseHeld``, or with ``wait`` call ``on_wait(info)`` once and poll
    every ``poll_s`` seconds until it is free (released, expired, or its holder gone)."""
    path = Path(path)
    told = False
    while True:
        try:
            return _try_acquire(path, name, ttl_s)
        except LeaseHeld as e:
            if not wait:
                raise
            if on_wait is not None and not told:
                on_wait(e.info)
                told = True
            time.sleep(poll_s)


def lease_holder(path: str | Path, name: str) -> LeaseInfo | None:
    """The live holder of ``name``, or None when it is free (no row, expired, or its process is gone)."""
    with closing(_connect(Path(path))) as conn:
        info = _read(conn, name)
    if info is None or info.expired() or info.holder_gone():
        return None
    return info


def _try_acquire(path: Path, name: str, ttl_s: float) -> Lease:
    conn = _connect(path)
    try:
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) and "busy" not in str(e):
                raise
            raise UsageError(f"{path} is locked by another process (waited {BUSY_TIMEOUT_S:g} s); wait for it to "
                             "finish or pass another --db") from e
        try:
            current = _read(conn, name)
            if current is not None and not current.expired() and not current.holder_gone():
                conn.execute("ROLLBACK")
                raise LeaseHeld(current)
            now = datetime.now(timezone.utc)
            info = LeaseInfo(name, uuid.uuid4().hex, os.getpid(), socket.gethostname(), utc_iso(now), utc_iso(now),
                             utc_iso(now + timedelta(seconds=ttl_s)))
            conn.execute("INSERT OR REPLACE INTO leases (name, holder, pid, host, acquired_at, heartbeat_at, "
                         "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                         [info.name, info.holder, info.pid, info.host, info.acquired_at, info.heartbeat_at,
                          info.expires_at])
            conn.execute("COMMIT")
        except LeaseHeld:
            raise
        except BaseException:
            conn.rollback()
            raise
    finally:
        conn.close()
    return Lease(path, info, ttl_s, previous=current)


def _read(conn: sqlite3.Connection, name: str) -> LeaseInfo | None:
    row = conn.execute("SELECT name, holder, pid, host, acquired_at, heartbeat_at, expires_at FROM leases "
                       "WHERE name = ?", [name]).fetchone()
    return None if row is None else LeaseInfo(*row)


def _connect(path: Path) -> sqlite3.Connection:
    """A connection in autocommit mode: each statement is its own transaction unless BEGIN says otherwise."""
    return sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)


def _retry_busy(fn: Callable[[], object], tries: int = 6) -> None:
    """Run ``fn``; a database busy past the connection's timeout is retried (a sweep may hold it for long writes)."""
    for i in range(tries):
        try:
            fn()
            return
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or i == tries - 1:
                raise
            time.sleep(0.2)


def _pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists and is not a zombie (a killed child its parent has not reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True
