"""The monitor-partition lease: one holder at a time, across threads and processes, released on exit or death."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import date

import pytest

from tasks.lease import PartitionBusyError, partition_lease

DAY = date(2026, 11, 22)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_second_holder_is_refused_until_the_first_lets_go(backend_url):
    with partition_lease(backend_url, "payments", DAY):
        with pytest.raises(PartitionBusyError, match=r"payments 2026-11-22 is already being monitored"):
            with partition_lease(backend_url, "payments", DAY):
                pass  # pragma: no cover
        # Another partition and another monitor are free.
        with partition_lease(backend_url, "payments", date(2026, 11, 21)):
            pass
        with partition_lease(backend_url, "orders", DAY):
            pass
    with partition_lease(backend_url, "payments", DAY):
        pass


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_waiting_holder_gets_the_lease_when_it_is_released(backend_url):
    released = threading.Event()

    def hold_briefly():
        with partition_lease(backend_url, "payments", DAY):
            started.set()
            time.sleep(0.6)
        released.set()

    started = threading.Event()
    holder = threading.Thread(target=hold_briefly)
    holder.start()
    assert started.wait(10)
    with partition_lease(backend_url, "payments", DAY, wait_s=10):
        assert released.is_set()
    holder.join()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_holder_releases_the_lease(backend_url):
    code = (
        "import sys, time\n"
        "from datetime import date\n"
        "from tasks.lease import partition_lease\n"
        f"with partition_lease({backend_url!r}, 'payments', date(2026, 11, 22)):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(PartitionBusyError):
            with partition_lease(backend_url, "payments", DAY):
                pass  # pragma: no cover
    finally:
        proc.kill()
        proc.wait()
    with partition_lease(backend_url, "payments", DAY, wait_s=10):
        pass


def test_in_memory_sqlite_leases_within_the_process():
    url = "sqlite://"
    with partition_lease(url, "payments", DAY):
        with pytest.raises(PartitionBusyError):
            with partition_lease(url, "payments", DAY):
                pass  # pragma: no cover
    with partition_lease(url, "payments", DAY):
        pass
