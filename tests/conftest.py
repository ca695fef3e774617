"""Shared fixtures: one Prefect test harness per session, small real demo databases."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import flows  # noqa: F401  (telemetry off before Prefect is imported)
from tasks.demo_data import DemoPlan, generate, write_demo_source

os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")

SMALL_PLAN = DemoPlan(days=12, rows_per_day=500, point_per_day=4, combination_per_day=2, shift_days=(10,), broken_day=8)


@pytest.fixture
def backend_url(backend, tmp_path):
    """A results/source database URL for the test's ``backend`` parameter ('sqlite' or 'postgresql')."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'results.db'}"
        return
    from pgutil import isolated_pg_url

    with isolated_pg_url() as url:
        yield url


@pytest.fixture
def receiver():
    """A local HTTP receiver: yields ((host, port), requests); paths starting with /fail answer HTTP 500."""
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            try:
                payload = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            received.append({"path": self.path, "headers": dict(self.headers), "json": payload})
            self.send_response(500 if self.path.startswith("/fail") else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[:2], received
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture(scope="session")
def prefect_harness():
    """A temporary Prefect API for the whole session (~20 s to start, once)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def scored_pg(prefect_harness, tmp_path_factory):
    """``backfilled_demo`` in a throwaway PostgreSQL schema (source and results): (config, plan, url).

    Shared by the PostgreSQL fault tests: the kill tests rerun the day before the last,
    the data-fault test breaks and runs the last day, so neither disturbs the other.
    """
    from pgutil import isolated_pg_url

    with isolated_pg_url() as url:
        config, plan = backfilled_demo(tmp_path_factory.mktemp("faults-pg"), url=url)
        yield config, plan, url


def backfilled_demo(directory: Path, url: str | None = None) -> tuple[Path, DemoPlan]:
    """The small demo (scores stored) backfilled from day 6 to the day before its last: models are
    trained for days 6 and 9, and the last day is not run yet. The fault suites start from it."""
    from datetime import timedelta

    from flows.daily import backfill

    config, plan = make_demo(directory, url=url, store_scores=True)
    first = plan.start + timedelta(days=6)
    state = backfill(str(config), "payments", first, plan.end - timedelta(days=1), return_state=True)
    assert state.is_completed(), state
    return config, plan


def small_config(db: Path | str, detector: str = "mad", params: str = "{}", store_scores: bool = False) -> str:
    """monitors.yaml for the small demo table in ``db`` (a SQLite file beside the config, or a URL)."""
    url = db if isinstance(db, str) else f"sqlite:///{db.name}"
    return f"""\
results: {url}
models: models
monitors:
  - name: payments
    source: {url}
    store_scores: {str(store_scores).lower()}
    table: payments
    partition_column: created_at
    key: id
    features: [amount, items, latency_ms, payload_kb, discount_pct, channel, country]
    detector: {{name: {detector}, params: {params}}}
    training: {{window: 5, retrain_every: 3, min_partitions: 3}}
    threshold: {{contamination: 0.01}}
    expectations:
      - {{expect: not_null, column: amount, mostly: 0.95}}
      - {{expect: between, column: amount, min: 0, max: 100000}}
      - {{expect: not_null, column: latency_ms, mostly: 0.9, severity: warning}}
      - {{expect: row_count_between, min: 100}}
"""


def make_demo(
    directory: Path, plan: DemoPlan = SMALL_PLAN, url: str | None = None, **config_kw
) -> tuple[Path, DemoPlan]:
    """The demo source table and a monitors.yaml in ``directory``; returns the config path.

    The table goes to ``url`` (source and results both) or to ``directory/source.db``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    db = directory / "source.db"
    payments, truth = generate(plan)
    write_demo_source(url or f"sqlite:///{db}", payments, truth)
    config = directory / "monitors.yaml"
    config.write_text(small_config(url or db, **config_kw))
    return config, plan


def db_url(config: Path) -> str:
    """The results (and source) URL of a config written by ``make_demo``, usable from any directory."""
    import yaml

    url = yaml.safe_load(config.read_text())["results"]
    if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
        url = f"sqlite:///{config.parent / url.removeprefix('sqlite:///')}"
    return url
