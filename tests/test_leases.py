"""Leases: one holder at a time, a heartbeat, takeover after expiry or when the holder's process is gone."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone

import pytest

from autointerp.db import open_db
from autointerp.db.leases import LeaseHeld, acquire_lease, lease_holder


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "a.db"
    open_db(path).close()
    return path


def plant(db, name, host, pid, expires_in_s):
    """A lease row written as another process would have left it."""
    now = datetime.now(timezone.utc)
    with open_db(db) as s:
        s.db.execute("INSERT INTO leases VALUES (?, 'other', ?, ?, ?, ?, ?)",
                     [name, pid, host, (now - timedelta(seconds=30)).isoformat(),
                      (now - timedelta(seconds=10)).isoformat(), (now + timedelta(seconds=expires_in_s)).isoformat()])
        s.db.conn.commit()


def test_one_holder_then_release(db):
    with acquire_lease(db, "run:k") as lease:
        with pytest.raises(LeaseHeld) as held:
            acquire_lease(db, "run:k")
        assert held.value.info.holder == lease.info.holder and held.value.info.pid == lease.info.pid
        assert lease_holder(db, "run:k") == lease.info
        with acquire_lease(db, "run:other"):  # other names are independent
            pass
    assert lease_holder(db, "run:k") is None
    with acquire_lease(db, "run:k") as again:
        assert again.previous is None  # released cleanly: nothing taken over


def test_expired_lease_of_another_host_is_taken_over_and_a_live_one_is_not(db):
    plant(db, "run:live", "elsewhere", 1, expires_in_s=60)
    with pytest.raises(LeaseHeld) as held:
        acquire_lease(db, "run:live")
    assert "elsewhere" in held.value.info.describe()
    plant(db, "run:dead", "elsewhere", 1, expires_in_s=-1)
    with acquire_lease(db, "run:dead") as lease:
        assert lease.previous is not None and lease.previous.host == "elsewhere"
        assert lease.previous.seconds_held() == pytest.approx(20, abs=1)


def test_lease_of_a_killed_process_on_this_host_is_taken_over_at_once(db):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    plant(db, "run:k", socket.gethostname(), proc.pid, expires_in_s=60)
    with pytest.raises(LeaseHeld):
        acquire_lease(db, "run:k")
    proc.kill()
    proc.wait()
    with acquire_lease(db, "run:k") as lease:
        assert lease.previous.pid == proc.pid


def until(condition, within_s: float = 10.0) -> bool:
    """Poll ``condition`` until it holds (True) or ``within_s`` passes (False): as fast as the code, patient on a
    busy machine."""
    deadline = time.monotonic() + within_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_heartbeat_keeps_the_lease_and_a_takeover_marks_it_lost(db):
    with acquire_lease(db, "run:k", ttl_s=0.6) as lease:  # a beat every 0.2 s
        first = lease_holder(db, "run:k").expires_at
        assert until(lambda: lease_holder(db, "run:k").expires_at > first), "no heartbeat renewed the lease"
        assert not lease.lost
        with open_db(db) as s:  # another process takes the row (as after a stall past expiry)
            s.db.execute("UPDATE leases SET holder = 'thief' WHERE name = 'run:k'")
            s.db.conn.commit()
        assert until(lambda: lease.lost), "the next beat did not notice the takeover"
    with open_db(db) as s:  # release never deletes another holder's row
        assert s.db.execute("SELECT holder FROM leases WHERE name = 'run:k'").fetchone() == ("thief",)


def test_racing_acquirers_exactly_one_wins(db):
    results: list[str] = []
    barrier = threading.Barrier(6)

    def attempt():
        barrier.wait()
        try:
            results.append(acquire_lease(db, "sweep:x").info.holder)
        except LeaseHeld:
            results.append("held")

    threads = [threading.Thread(target=attempt) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("held") == 5


@pytest.mark.slow  # waits on timeouts, latencies or leases: seconds of wall time
def test_wait_returns_once_the_holder_releases(db):
    lease = acquire_lease(db, "run:k")
    threading.Timer(0.5, lease.release).start()
    seen = []
    t0 = time.time()
    with acquire_lease(db, "run:k", wait=True, poll_s=0.1, on_wait=seen.append) as mine:
        assert time.time() - t0 >= 0.4 and mine.previous is None
    assert len(seen) == 1 and seen[0].holder == lease.info.holder
