"""Infrastructure faults: each run fails clearly or recovers, and the results database never holds half a run.

Outcomes, fault by fault:

- source unreachable: the inspect stage is tried three times (two retries with backoff), then the
  run is ``failed`` in tw_runs with a message naming the source (password masked) and "cannot reach";
- results database failing mid-write: the transaction rolls back, the earlier result set stays
  complete and untouched, tw_runs records the failed attempt (see ``tasks.store``); a rerun replaces
  both with one result set. A transient failure (OperationalError) is retried and the retry writes
  everything, spooled scores included;
- the process killed at a stage boundary (SIGKILL, in a subprocess; on SQLite at every boundary, on
  PostgreSQL around the write, where rows go in by COPY and the lease is an advisory lock): nothing is
  written before the write stage's transaction commits, so the partition holds the previous result set
  or the killed run's complete one, never a mix; no 'running' row is left; the lease dies with the
  process; a model the killed run registered is simply loaded by the rerun, one it only saved is
  ignored; a save it abandoned half-way is never loaded and is removed by a later save once 6 h old;
- two runs of one monitor-partition at once: one result set; the other run is refused with
  PartitionBusyError and writes nothing;
- model artifact missing or corrupt: treated alike, the monitor retrains and says why in the run's note
  and the report;
- disk full while saving a model: a clear ModelError, nothing registered, no directory where a later
  load would find half a model; the next run trains and succeeds.

A small demo is backfilled once per module; tests work on private copies of it.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import backfilled_demo, db_url, make_demo
from sqlalchemy.exc import DataError, OperationalError
from test_flows import TABLES, execute, query
from typer.testing import CliRunner

import detectors
from flows.cli import app
from flows.daily import daily_monitoring
from tasks.errors import ConfigError, ModelError, SourceUnavailableError, is_transient
from tasks.extract import reflect_source
from tasks.normalise import Normaliser
from tasks.spec import load_config
from tasks.store import prepare_results_db
from tasks.train import current_model_row, load_model, models_directory, save_bundle

flow_test = pytest.mark.usefixtures("prefect_harness")
REPO = Path(__file__).resolve().parents[1]


# -- shared setup ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scored(prefect_harness, tmp_path_factory):
    """The small demo (scores stored) backfilled from day 6 to the day before its last: (directory, plan).

    Models are trained for days 6 and 9 (on days validated on the way); the last day is not run yet.
    """
    base = tmp_path_factory.mktemp("faults-base")
    _, plan = backfilled_demo(base)
    return base, plan


def copy_demo(scored, directory: Path) -> tuple[Path, object, str]:
    """A private copy of the scored demo, its tw_models pointing at its own artifacts: (config, plan, url)."""
    base, plan = scored
    shutil.copytree(base, directory)
    config = directory / "monitors.yaml"
    url = db_url(config)
    execute(
        url,
        "UPDATE tw_models SET artifact = :new || substr(artifact, :cut)",
        new=str(directory.resolve()),
        cut=len(str(base.resolve())) + 1,
    )
    return config, plan, url


@pytest.fixture
def demo(scored, tmp_path):
    return copy_demo(scored, tmp_path / "demo")


def snapshot(url: str, day: date) -> dict[str, list[tuple]]:
    """Per result table, (run_id, row count) for the partition: equal snapshots mean an untouched partition."""
    out = {}
    for table in TABLES:
        column = "report_date" if table == "tw_daily_reports" else "partition_date"
        out[table] = query(
            url, f"SELECT run_id, COUNT(*) FROM {table} WHERE {column} = :day GROUP BY run_id ORDER BY run_id", day=day
        )
    return out


def one_result_set(url: str, day: date) -> tuple[str, str, str | None]:
    """Assert the partition holds exactly one complete result set; returns (run_id, status, model_version)."""
    ((run_id, status, rows_scored, anomalies, model_version),) = query(
        url,
        "SELECT run_id, status, rows_scored, anomalies, model_version FROM tw_runs WHERE partition_date = :day",
        day=day,
    )
    shot = snapshot(url, day)
    for table, rows in shot.items():
        assert {r[0] for r in rows} <= {run_id}, (table, rows, run_id)
    counts = {table: sum(n for _, n in rows) for table, rows in shot.items()}
    assert counts["tw_daily_reports"] == 1 and counts["tw_validations"] > 0, counts
    if status == "succeeded":
        assert counts["tw_anomalies"] == anomalies and counts["tw_scores"] == rows_scored > 0, counts
    return run_id, status, model_version


def models_for(url: str, day: date) -> list[tuple]:
    return query(url, "SELECT model_version, artifact FROM tw_models WHERE trained_for = :day", day=day)


def rerun(config: Path, day: date) -> str:
    """``tablewatch run`` for the partition (in this process); returns its output."""
    result = CliRunner().invoke(app, ["run", "--config", str(config), "--partition", day.isoformat()])
    assert result.exit_code == 0, result.output
    return result.output


# -- 1. source unreachable -------------------------------------------------------------------------
@flow_test
def test_an_unreachable_source_is_retried_then_the_run_fails_naming_it(demo, monkeypatch):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    config, plan, url = demo
    monkeypatch.setenv("TW_TEST_PG_PW", "hunter2")  # passwords only come from the environment
    closed = "postgresql+psycopg://postgres:${TW_TEST_PG_PW}@127.0.0.1:1/test"  # nothing listens on port 1
    config.write_text(config.read_text().replace("    source: sqlite:///source.db", f"    source: {closed}"))
    started = time.monotonic()
    state = daily_monitoring(str(config), plan.end, return_state=True)
    elapsed = time.monotonic() - started
    assert state.is_failed()
    ((status, error, flow_run_id),) = query(
        url, "SELECT status, error, flow_run_id FROM tw_runs WHERE partition_date = :day", day=plan.end
    )
    assert status == "failed"
    assert "cannot reach source postgresql+psycopg://postgres:***@127.0.0.1:1/test" in error, error
    assert "Connection refused" in error
    assert "hunter2" not in error and "hunter2" not in str(state.result(raise_on_failure=False))
    with get_client(sync_client=True) as client:
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    (inspect,) = [t for t in task_runs if t.name.startswith("inspect-source")]
    assert inspect.run_count == 3 and inspect.state.is_failed()  # two retries, then it gave up
    assert elapsed > 7.5  # the backoff (about 2 s, then 10 s; jittered down to 63% at least) was waited out
    assert not [t for t in task_runs if t.name.startswith(("train-or-load", "write"))]


@pytest.mark.postgres
@pytest.mark.parametrize(
    "change, says",
    [
        (("/test", "/no_such_database"), 'database "no_such_database" does not exist'),
        (("postgres@", "no_such_role@"), 'role "no_such_role" does not exist'),
    ],
)
def test_a_source_that_answers_no_fails_at_once_without_retrying(tmp_path, change, says):
    """A wrong database or user name is not a server hiccup: no backoff, the server's words in the error."""
    from pgutil import PG_URL, _sqlalchemy_url, require_pg

    require_pg()
    url = _sqlalchemy_url(PG_URL).replace(*change)
    spec = load_config_text(tmp_path, "").monitors[0].model_copy(update={"source": url})
    with pytest.raises(SourceUnavailableError, match=says) as raised:
        reflect_source(spec)
    assert raised.value.transient is False and not is_transient(raised.value)


def test_connection_errors_are_transient_unless_the_server_said_no():
    def operational(text: str) -> OperationalError:
        return OperationalError("SELECT 1", {}, Exception(text))

    assert is_transient(operational("server closed the connection unexpectedly"))
    assert is_transient(operational("database is locked"))
    assert is_transient(operational("connection refused"))
    assert not is_transient(operational('FATAL:  password authentication failed for user "reader"'))
    assert not is_transient(operational('FATAL:  database "shop" does not exist'))


# -- 2. results database failing mid-write ----------------------------------------------------------
def fail_bulk_insert(monkeypatch, table_name: str, errors: list[Exception]) -> list[int]:
    """Make ``write_partition``'s bulk insert into ``table_name`` write its rows, then raise ``errors`` in turn."""
    import tasks.store

    real = tasks.store.insert_arrow
    calls: list[int] = []

    def insert(conn, table, batches):
        written = real(conn, table, batches)
        if table.name == table_name:
            calls.append(written)
            if len(calls) <= len(errors):
                raise errors[len(calls) - 1]
        return written

    monkeypatch.setattr(tasks.store, "insert_arrow", insert)
    return calls


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def with_results(request, scored, prefect_harness, tmp_path):
    """(config, url, day): a partition holding a complete result set, results (and source) on each backend."""
    if request.param == "sqlite":
        config, plan, url = copy_demo(scored, tmp_path / "demo")
        yield config, url, plan.end - timedelta(days=1)
        return
    from pgutil import isolated_pg_url

    with isolated_pg_url() as pg:
        config, plan = make_demo(tmp_path / "demo", url=pg, store_scores=True)
        assert daily_monitoring(str(config), plan.end, return_state=True).is_completed()
        yield config, db_url(config), plan.end


@flow_test
def test_a_results_database_failing_mid_write_keeps_the_earlier_results(with_results, monkeypatch):
    config, url, day = with_results
    before = snapshot(url, day)
    first_run, _, _ = one_result_set(url, day)

    broken = DataError("COPY tw_scores", {}, Exception("injected: the results database refused the write"))
    calls = fail_bulk_insert(monkeypatch, "tw_scores", [broken])
    state = daily_monitoring(str(config), day, return_state=True)
    assert state.is_failed()
    assert calls[0] > 0 and len(calls) == 1  # rows went in inside the transaction; not transient: not retried
    # Decided in tasks.store: tw_runs records the failed attempt; every other table keeps the earlier run's rows.
    ((run_id, status, error),) = query(
        url, "SELECT run_id, status, error FROM tw_runs WHERE partition_date = :day", day=day
    )
    assert status == "failed" and run_id != first_run and "injected" in error, error
    failed_run = run_id
    after = snapshot(url, day)
    assert after.pop("tw_runs") != before.pop("tw_runs")
    assert after == before

    monkeypatch.undo()
    assert daily_monitoring(str(config), day, return_state=True).is_completed()
    run_id, status, _ = one_result_set(url, day)
    assert status == "succeeded" and run_id not in (first_run, failed_run)


@flow_test
def test_a_transient_failure_mid_write_is_retried_and_the_retry_writes_everything(demo, monkeypatch):
    config, plan, url = demo
    day = plan.end - timedelta(days=1)
    before = snapshot(url, day)
    lost = OperationalError("COPY tw_scores", {}, Exception("injected: server closed the connection unexpectedly"))
    calls = fail_bulk_insert(monkeypatch, "tw_scores", [lost])
    assert daily_monitoring(str(config), day, return_state=True).is_completed()
    assert len(calls) == 2 and calls[0] == calls[1] > 0  # the retry wrote every spooled score again
    run_id, status, _ = one_result_set(url, day)
    assert status == "succeeded" and snapshot(url, day) != before
    assert {t: sum(n for _, n in rows) for t, rows in snapshot(url, day).items()} == {
        t: sum(n for _, n in rows) for t, rows in before.items()
    }


# -- 3. the process killed at each stage boundary ------------------------------------------------------
CHILD = r"""
import os, signal, sys
from datetime import date

import flows.monitor as monitor
import tasks.store as store
import tasks.train as train
from flows.daily import daily_monitoring

boundary, config, day = sys.argv[1], sys.argv[2], date.fromisoformat(sys.argv[3])


def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)


def then_die(call):
    def wrapper(*args, **kwargs):
        out = call(*args, **kwargs)
        die()
        return out

    return wrapper


class TaskThenDie:
    def __init__(self, task):
        self.task = task

    def with_options(self, **options):
        return then_die(self.task.with_options(**options))


if boundary == "inspect":
    monitor.open_partition_task = TaskThenDie(monitor.open_partition_task)
elif boundary == "model-saved":  # artifact in place, tw_models row not yet inserted
    train.save_bundle = then_die(train.save_bundle)
elif boundary == "train":
    monitor.train_or_load_task = TaskThenDie(monitor.train_or_load_task)
elif boundary == "scan":
    monitor.scan_task = TaskThenDie(monitor.scan_task)
elif boundary == "write":  # rows inserted inside the partition's transaction, not committed
    store.insert_arrow = then_die(store.insert_arrow)
elif boundary == "written":  # committed; finish_run, publish and alert not done
    monitor.finish_run = die
print("ready", flush=True)
sys.stdin.readline()  # the go signal (at once when stdin is /dev/null)
daily_monitoring(config, day)
"""
BOUNDARIES = ("inspect", "model-saved", "train", "scan", "write", "written")


def start_child(boundary: str, config: Path, day: date, log: Path, stdin=subprocess.DEVNULL) -> subprocess.Popen:
    """``daily_monitoring(config, day)`` in a new Python process that kills itself at ``boundary``."""
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": PREFECT_API_URL.value(),
        "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", CHILD, boundary, str(config), day.isoformat()],
            cwd=REPO,
            env=env,
            stdin=stdin,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


@pytest.fixture(scope="module")
def killed(scored, prefect_harness, tmp_path_factory):
    """One copy of the demo per boundary, each rerunning its last scored day in a process killed there.

    The model serving that day is unregistered first, so every killed run trains before it scores.
    The children run side by side; returns {boundary: (config, plan, url, day, snapshot before the kill)}.
    """
    _, plan = scored
    day = plan.end - timedelta(days=1)
    started = {}
    for boundary in BOUNDARIES:
        directory = tmp_path_factory.mktemp(f"killed-{boundary}")
        config, plan, url = copy_demo(scored, directory / "demo")
        execute(url, "DELETE FROM tw_models WHERE trained_for = :d", d=day - timedelta(days=1))
        before = snapshot(url, day)
        child = start_child(boundary, config, day, directory / "child.log")
        started[boundary] = (config, plan, url, before, child, directory / "child.log")
    out = {}
    try:
        for boundary, (config, plan, url, before, child, log) in started.items():
            returncode = child.wait(timeout=300)
            assert returncode == -signal.SIGKILL, f"{boundary}: exit {returncode}\n{log.read_text()[-3000:]}"
            out[boundary] = (config, plan, url, day, before)
    finally:
        stop([entry[4] for entry in started.values()])
    return out


def stop(children: list[subprocess.Popen]) -> None:
    """Kill whichever of these child processes still runs (a failed test must not leave them behind)."""
    for child in children:
        if child.poll() is None:
            child.kill()
            child.wait()


@flow_test
@pytest.mark.parametrize("boundary", BOUNDARIES)
def test_a_run_killed_at_a_stage_boundary_leaves_a_clean_partition_and_a_rerun_completes(killed, boundary):
    config, plan, url, day, before = killed[boundary]
    ((previous_run, _),) = before["tw_runs"]
    after = snapshot(url, day)
    assert query(url, "SELECT COUNT(*) FROM tw_runs WHERE status = 'running'") == [(0,)]  # never written
    if boundary == "written":  # the killed run's complete result set replaced the previous one
        killed_run, status, _ = one_result_set(url, day)
        assert status == "succeeded" and killed_run != previous_run
    else:  # the previous result set, untouched
        assert after == before
    registered = models_for(url, day)
    assert len(registered) == (0 if boundary in ("inspect", "model-saved") else 1), registered
    versions = {p.name for p in (config.parent / "models" / "payments").iterdir()}
    if boundary == "model-saved":  # saved, never registered: on disk, but nothing will load it
        assert any(v.startswith(f"payments-{day:%Y%m%d}-") for v in versions), versions

    if boundary == "inspect":  # nothing in tablewatch leaves a 'running' row; one from elsewhere is replaced
        execute(url, "UPDATE tw_runs SET status = 'running', finished_at = NULL WHERE partition_date = :d", d=day)
    output = rerun(config, day)  # the lease died with the process: not refused
    assert "succeeded" in output
    run_id, status, model_version = one_result_set(url, day)
    assert status == "succeeded" and run_id != previous_run
    if registered:  # the killed run's model is complete and registered: the rerun uses it
        assert model_version == registered[0][0]
    assert len(models_for(url, day)) == 1
    assert not [v for v in versions if v.endswith(".tmp")]


@flow_test
@pytest.mark.postgres
@pytest.mark.parametrize("boundary", ["write", "written"])  # the PostgreSQL-specific boundaries
def test_a_run_killed_around_the_write_on_postgresql_leaves_a_clean_partition(scored_pg, boundary, tmp_path):
    """On PostgreSQL the partition's rows go in by COPY inside one transaction, and the lease is an
    advisory lock held by a connection: a killed process leaves the server to roll the one back and
    release the other. Each case reruns the partition, so the cases start from one result set."""
    config, plan, url = scored_pg
    day = plan.end - timedelta(days=1)
    before = snapshot(url, day)
    ((previous_run, _),) = before["tw_runs"]
    child = start_child(boundary, config, day, tmp_path / "child.log")
    try:
        returncode = child.wait(timeout=300)
    finally:
        stop([child])
    log = (tmp_path / "child.log").read_text()
    assert returncode == -signal.SIGKILL, f"{boundary}: exit {returncode}\n{log[-3000:]}"
    assert query(url, "SELECT COUNT(*) FROM tw_runs WHERE status = 'running'") == [(0,)]
    if boundary == "written":  # committed before the kill: the killed run's complete result set
        killed_run, status, _ = one_result_set(url, day)
        assert status == "succeeded" and killed_run != previous_run
    else:  # the COPY was never committed: the previous result set, untouched
        assert snapshot(url, day) == before
    assert "succeeded" in rerun(config, day)  # the advisory lock died with the connection: not refused
    run_id, status, _ = one_result_set(url, day)
    assert status == "succeeded" and run_id != previous_run


# -- 4. two runs of one monitor-partition at once -----------------------------------------------------
@flow_test
def test_two_runs_of_one_partition_at_once_leave_one_result_set(demo, tmp_path):
    config, plan, url = demo
    day = plan.end
    children = [start_child("none", config, day, tmp_path / f"run{i}.log", stdin=subprocess.PIPE) for i in range(2)]
    outcomes = []
    try:
        deadline = time.monotonic() + 120
        while not all("ready" in (tmp_path / f"run{i}.log").read_text() for i in range(2)):  # both imported all
            assert time.monotonic() < deadline and all(c.poll() is None for c in children)
            time.sleep(0.05)
        for child in children:
            child.stdin.write(b"go\n")
            child.stdin.flush()
        for child in children:
            child.stdin.close()
        for i, child in enumerate(children):
            returncode = child.wait(timeout=300)
            log = (tmp_path / f"run{i}.log").read_text()
            refused = returncode != 0 and f"payments {day} is already being monitored" in log
            assert returncode == 0 or refused, log[-3000:]
            outcomes.append("refused" if refused else "succeeded")
    finally:
        stop(children)
    run_id, status, _ = one_result_set(url, day)
    assert status == "succeeded"
    assert query(url, "SELECT COUNT(*) FROM tw_runs WHERE status = 'failed'") == [(0,)]  # the refused one wrote nothing
    assert "succeeded" in outcomes


# -- 5. model artifact missing or corrupt ---------------------------------------------------------------
def break_artifact(artifact: Path, how: str) -> None:
    if how == "deleted":
        shutil.rmtree(artifact)
    elif how == "truncated-weights":
        weights = artifact / "detector" / "arrays.npz"
        weights.write_bytes(weights.read_bytes()[:40])


@flow_test
@pytest.mark.parametrize("how", ["deleted", "truncated-weights"])
def test_a_missing_or_corrupt_model_artifact_is_retrained_and_the_run_says_why(demo, how):
    config, plan, url = demo
    day = plan.end
    row = current_model_row(load_config(config).monitor("payments"), day)
    artifact = Path(row.artifact)
    break_artifact(artifact, how)
    with pytest.raises(ModelError) as raised:  # loading it directly is a clear error naming model and path
        load_model(row)
    assert row.model_version in str(raised.value) and str(artifact) in str(raised.value)

    assert daily_monitoring(str(config), day, return_state=True).is_completed()
    run_id, status, model_version = one_result_set(url, day)
    ((new_version, new_artifact),) = models_for(url, day)
    assert status == "succeeded" and model_version == new_version != row.model_version
    assert (Path(new_artifact) / "bundle.json").is_file()
    ((note,),) = query(url, "SELECT note FROM tw_runs WHERE partition_date = :day", day=day)
    ((markdown,),) = query(url, "SELECT markdown FROM tw_daily_reports WHERE report_date = :day", day=day)
    expected = "is missing" if how == "deleted" else "cannot be loaded"
    for text in (note, markdown):
        assert row.model_version in text and str(artifact) in text and expected in text, text


# -- 6. a full disk while saving a model ------------------------------------------------------------------
def fill_disk_on(monkeypatch, name: str, after_bytes: int = 64) -> list[Path]:
    """Writing a file called ``name`` writes ``after_bytes`` bytes, then fails with ENOSPC (as a full disk does)."""
    import pathlib

    real_write_text = pathlib.Path.write_text
    real_savez = np.savez
    failed: list[Path] = []

    def full(path: Path, data: bytes) -> None:
        with open(path, "wb") as out:
            out.write(data[:after_bytes])
        failed.append(Path(path))
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    def write_text(self, data, *args, **kwargs):
        if self.name == name:
            full(self, data.encode())
        return real_write_text(self, data, *args, **kwargs)

    def savez(file, *args, **kwds):
        if Path(file).name == name:
            full(Path(file), b"PK\x03\x04" + b"\0" * 1024)
        return real_savez(file, *args, **kwds)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)
    monkeypatch.setattr(np, "savez", savez)
    return failed


@pytest.mark.parametrize("name", ["normaliser.json", "arrays.npz", "bundle.json"])
def test_a_full_disk_while_saving_a_model_leaves_no_directory_behind(tmp_path, monkeypatch, name):
    """Extends test_stages' save_bundle test to a write failing part-way, in each of the bundle's files."""
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    norm = Normaliser().fit(frame, ["x"])
    detector = detectors.create("mad").fit(norm.transform(frame))
    failed = fill_disk_on(monkeypatch, name)
    target = tmp_path / "models" / "v1"
    full = r"saving model v1 to .*v1 failed, nothing was kept: .*No space left on device"
    with pytest.raises(ModelError, match=full):
        save_bundle(target, "v1", "events", date(2026, 1, 1), norm, detector)
    assert failed and not failed[0].exists()  # the half-written file went with its temporary directory
    assert list((tmp_path / "models").iterdir()) == []
    monkeypatch.undo()
    save_bundle(target, "v1", "events", date(2026, 1, 1), norm, detector)  # space again: the same version saves
    assert (target / "bundle.json").is_file()


def test_a_save_abandoned_by_a_killed_process_is_removed_by_a_later_save_once_old(tmp_path):
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    norm = Normaliser().fit(frame, ["x"])
    detector = detectors.create("mad").fit(norm.transform(frame))
    models = tmp_path / "models"
    abandoned, in_progress = models / ".v0.k1ll3d.tmp", models / ".v2.s4v1ng.tmp"
    for path in (abandoned, in_progress):
        (path / "detector").mkdir(parents=True)
        (path / "normaliser.json").write_text("{")  # half written, no bundle.json
    day_ago = time.time() - 24 * 3600
    os.utime(abandoned, (day_ago, day_ago))
    save_bundle(models / "v1", "v1", "events", date(2026, 1, 1), norm, detector)
    assert sorted(p.name for p in models.iterdir()) == [".v2.s4v1ng.tmp", "v1"]  # a young one may be saving now


def test_an_unusable_models_directory_is_a_model_error_naming_it_before_any_training(tmp_path):
    (tmp_path / "afile").write_text("not a directory")
    spec = load_config_text(tmp_path, "models: afile/models\n").monitors[0]
    with pytest.raises(ModelError, match=r"cannot create the model directory .*afile/models/payments \('models' in"):
        models_directory(spec)
    frame = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0]})
    norm = Normaliser().fit(frame, ["x"])
    detector = detectors.create("mad").fit(norm.transform(frame))
    with pytest.raises(ModelError, match="saving model v1 to .* failed, nothing was written: .*File exists"):
        save_bundle(tmp_path / "afile" / "v1", "v1", "payments", date(2026, 1, 1), norm, detector)
    assert (tmp_path / "afile").read_text() == "not a directory"


def test_a_missing_sqlite_source_file_is_reported_and_not_created(tmp_path):
    spec = load_config_text(tmp_path, "").monitors[0].model_copy(update={"source": f"sqlite:///{tmp_path}/typo.db"})
    with pytest.raises(SourceUnavailableError, match=r"source database file .*typo\.db does not exist"):
        reflect_source(spec)
    assert not (tmp_path / "typo.db").exists()


def test_a_sqlite_results_file_gets_its_directory_or_a_config_error_naming_it(tmp_path):
    prepare_results_db(f"sqlite:///{tmp_path}/new/dir/results.db")
    assert (tmp_path / "new" / "dir" / "results.db").is_file()
    (tmp_path / "afile").write_text("in the way")
    in_the_way = r"cannot create .*afile, the directory of the results .*a file is in the way"
    with pytest.raises(ConfigError, match=in_the_way):
        prepare_results_db(f"sqlite:///{tmp_path}/afile/results.db")
    assert (tmp_path / "afile").read_text() == "in the way"


def load_config_text(directory: Path, top: str):
    """A one-monitor config (source: the demo's table names) with ``top`` prepended, loaded from ``directory``."""
    path = directory / "monitors.yaml"
    path.write_text(
        top + "monitors:\n  - {name: payments, source: 'sqlite:///src.db', table: payments, "
        "partition_column: created_at, key: id}\n"
    )
    return load_config(path)


@flow_test
def test_a_full_disk_while_saving_a_model_fails_the_run_and_the_next_run_trains(demo, monkeypatch):
    config, plan, url = demo
    day = plan.end
    models = config.parent / "models" / "payments"
    execute(url, "DELETE FROM tw_models WHERE trained_for <= :d", d=day)  # the run must train
    on_disk = set(models.iterdir())
    failed = fill_disk_on(monkeypatch, "arrays.npz")
    state = daily_monitoring(str(config), day, return_state=True)
    assert state.is_failed() and failed
    ((status, error),) = query(url, "SELECT status, error FROM tw_runs WHERE partition_date = :day", day=day)
    assert status == "failed" and "ModelError: saving model payments-" in error and "No space left on device" in error
    assert query(url, "SELECT COUNT(*) FROM tw_models") == [(0,)]  # nothing registered
    assert set(models.iterdir()) == on_disk  # no new directory, complete or partial, temporary or final

    monkeypatch.undo()
    assert daily_monitoring(str(config), day, return_state=True).is_completed()
    ((version, artifact),) = models_for(url, day)
    assert one_result_set(url, day)[1:] == ("succeeded", version)
    assert set(models.iterdir()) == on_disk | {Path(artifact)}
