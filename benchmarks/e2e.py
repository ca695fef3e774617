"""End to end: one monitor run on an N-row partition, beside a naive pandas pipeline and a raw ADBC fetch.

    python benchmarks/e2e.py --rows 1000000 --db postgres               # the 1M comparison
    python benchmarks/e2e.py --rows 5000000 --db postgres --skip-naive  # the 5M memory run
    python benchmarks/e2e.py --rows 20000 --train-rows 5000 --db sqlite --detector mad

Method:

1. Build (not timed as part of any result). A source table ``bench_source`` with id (bigint key),
   ts (timestamp) and 22 features: f00..f19 float64 made of 4 latent factors plus noise (so
   the columns are correlated; each its own location and scale; f19 0.2% null), cat_a (5
   values) and cat_b (40 values, Zipf-skewed). ``--train-days + 1`` earlier day-partitions of
   ``--train-rows`` rows, then the benchmark partition of ``--rows`` rows. Every partition has
   1% outliers: half one extreme value (8-20 sigma), half broken correlations (about 30% of the
   columns drawn from an unrelated latent vector: each value normal, the row not). Written in
   chunks of 500,000 rows with ADBC bulk ingest (COPY on PostgreSQL), index on ts, then
   VACUUM ANALYZE / ANALYZE. PostgreSQL: everything (source, tw_ tables, scratch tables) lives
   in schema ``--schema`` (default ``tw_bench``, dropped and recreated by every build) through
   the URL option ``search_path``; SQLite: ``source.db`` and ``results.db`` in ``--workdir``.
   Then the real flow, ``monitor_table``, runs for the last day before the benchmark partition:
   it trains the model (window = ``--train-days`` partitions) that the timed run loads.
2. Before the timed parts, one ``SELECT sum(f00)`` over the partition warms the database's
   cache, so no part pays for cold pages that a later part finds cached.
3. Three timed parts, each in a fresh Python process so that its peak RSS (``ru_maxrss``,
   read in the child at its end) is its own:

   - **tablewatch**: a trivial flow first starts Prefect's temporary server, and Keras and the
     Great Expectations context are imported, as in a long-running worker (not timed); then
     ``monitor_table(spec, day)`` is timed wall-clock. Per-stage seconds come from that run's
     ``tw_runs.stage_seconds`` (``extract`` is the reading, done in a read-ahead thread beside
     validate/normalise/score; ``extract_wait`` the part of it the pipeline waited for, which is
     what counts toward the wall time); "other" is the wall time outside the stages (Prefect's task
     and flow bookkeeping, creating missing result tables, the final tw_runs update). The run
     must load the model built in step 1 (checked: no new ``tw_models`` row, and the run's
     model version is the one trained before). The monitor has ``store_scores: true``.
   - **naive** (Keras imported first, too): ``pandas.read_sql`` of the same columns with the same predicate through a
     SQLAlchemy engine; ``load_model(current_model_row(...))``; ``normaliser.transform``;
     ``score_partition`` (the detector's scores, the rows above its threshold explained);
     ``DataFrame.to_sql`` of the anomaly records (contributions as JSON text) to
     ``naive_anomalies`` and of every row's score to ``naive_scores`` (if_exists="replace",
     pandas' default ``method=None``, or ``--naive-method multi``: multi-row INSERTs of at most
     1,000 rows, what a naive user often reaches for).
   - **raw**: the ADBC driver's ``cursor.execute(SELECT); cursor.fetch_arrow_table()``, the
     floor for reading these rows into Arrow.

   The SELECT of naive and raw is what tablewatch reads: key, ts and the features, with
   ``ts >= day AND ts < day + 1``.

rows/s is always the partition's rows over the stage's seconds. Tables go to stdout (valid
markdown), progress and the children's output to stderr; ``--json PATH`` writes every figure.
``--skip-build`` reuses the table, config and model of the last build in the same schema and
work directory, for repeated timings (the timed run replaces its own tw_ rows each time).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))

MONITOR = "e2e"
TABLE = "bench_source"
BENCH_DAY = date(2026, 3, 16)
NUMERIC = [f"f{i:02d}" for i in range(20)]
FEATURES = [*NUMERIC, "cat_a", "cat_b"]
COLUMNS = ["id", "ts", *FEATURES]
"""What tablewatch reads (key, partition column, features) and so what naive and raw select."""
CAT_A = ["north", "south", "east", "west", "central"]
CAT_A_P = np.array([0.3, 0.25, 0.2, 0.15, 0.1])
CAT_B = [f"b{i:02d}" for i in range(40)]
CAT_B_P = 1.0 / np.arange(1, 41) ** 1.1
CAT_B_P /= CAT_B_P.sum()
LATENT = 4
NOISE = 0.35
OUTLIER_SHARE = 0.01
NULL_SHARE_F19 = 0.002
CHUNK_ROWS = 500_000
NAIVE_MULTI_CHUNK = 1_000
MANIFEST = "manifest.json"
STAGE_ORDER = (
    "inspect",
    "train",
    "extract",
    "extract_wait",
    "validate",
    "normalise",
    "score",
    "evaluate",
    "report",
    "write",
)
OVERLAPPED = {"extract"}
"""Stages that run beside others (reading ahead in a thread); their wall share is extract_wait."""
"""monitor_table's stages in the order they run (PostgreSQL's JSONB does not keep the order of keys)."""


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


# -- data ---------------------------------------------------------------------------------
class Synth:
    """The source table's distribution: correlated numeric columns, two categoricals, 1% outliers."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 0xE2E])
        loadings = rng.normal(size=(LATENT, len(NUMERIC)))
        self.loadings = loadings / np.linalg.norm(loadings, axis=0)  # unit factor variance per column
        self.means = np.round(rng.uniform(-50.0, 500.0, size=len(NUMERIC)), 1)
        self.scales = np.exp(rng.uniform(np.log(0.5), np.log(200.0), size=len(NUMERIC)))
        self.seed = seed

    def bounds(self, column: str, sigmas: float = 1000.0) -> tuple[float, float]:
        """A range no value of ``column`` leaves (outliers are at most ~20 sigma)."""
        j = NUMERIC.index(column)
        half = sigmas * self.scales[j]
        return float(round(self.means[j] - half)), float(round(self.means[j] + half))

    def chunk(self, day: date, chunk: int, chunks: int, n: int, first_id: int) -> dict[str, np.ndarray]:
        """Rows ``first_id..first_id+n-1`` of ``day``: the ``chunk``-th of ``chunks`` time slices, in ts order."""
        rng = np.random.default_rng([self.seed, day.toordinal(), chunk])
        lo, hi = 86_400.0 * chunk / chunks, 86_400.0 * (chunk + 1) / chunks
        micros = (np.sort(rng.uniform(lo, hi, size=n)) * 1e6).astype(np.int64)
        ts = np.datetime64(day.isoformat(), "us") + micros.astype("timedelta64[us]")
        x = rng.standard_normal((n, LATENT)) @ self.loadings + NOISE * rng.standard_normal((n, len(NUMERIC)))
        outliers = rng.choice(n, size=int(n * OUTLIER_SHARE), replace=False)
        extreme, broken = outliers[: len(outliers) // 2], outliers[len(outliers) // 2 :]
        columns = rng.integers(0, len(NUMERIC), size=len(extreme))
        signs = rng.choice([-1.0, 1.0], size=len(extreme))
        x[extreme, columns] = signs * rng.uniform(8.0, 20.0, size=len(extreme))
        unrelated = rng.standard_normal((len(broken), LATENT)) @ self.loadings
        unrelated += NOISE * rng.standard_normal(unrelated.shape)
        swap = rng.random(unrelated.shape) < 0.3
        x[broken] = np.where(swap, unrelated, x[broken])
        values = self.means + self.scales * x
        values[rng.random(n) < NULL_SHARE_F19, NUMERIC.index("f19")] = np.nan
        out: dict[str, np.ndarray] = {"id": np.arange(first_id, first_id + n, dtype=np.int64), "ts": ts}
        for j, name in enumerate(NUMERIC):
            out[name] = np.round(values[:, j], 4)
        out["cat_a"] = rng.choice(len(CAT_A), size=n, p=CAT_A_P)
        out["cat_b"] = rng.choice(len(CAT_B), size=n, p=CAT_B_P)
        return out


def arrow_chunk(data: dict[str, np.ndarray], db: str):
    import pyarrow as pa
    import pyarrow.compute as pc

    ts = pa.array(data["ts"], type=pa.timestamp("us"))
    if db == "sqlite":  # dates are text in SQLite; ISO strings compare correctly
        ts = pc.strftime(ts, format="%Y-%m-%d %H:%M:%S")
    arrays = {"id": pa.array(data["id"]), "ts": ts}
    for name in NUMERIC:
        arrays[name] = pa.array(data[name], from_pandas=True)  # NaN -> NULL
    arrays["cat_a"] = pa.array(CAT_A).take(pa.array(data["cat_a"]))
    arrays["cat_b"] = pa.array(CAT_B).take(pa.array(data["cat_b"]))
    return pa.table(arrays)


def source_ddl(db: str) -> str:
    if db == "postgres":
        cols = ["id BIGINT NOT NULL", "ts TIMESTAMP NOT NULL"] + [f"{c} DOUBLE PRECISION" for c in NUMERIC]
    else:
        cols = ["id BIGINT NOT NULL", "ts TIMESTAMP NOT NULL"] + [f"{c} REAL" for c in NUMERIC]
    cols += ["cat_a TEXT", "cat_b TEXT"]
    return f"CREATE TABLE {TABLE} ({', '.join(cols)})"


def partition_select(day: date) -> str:
    """The query naive and raw run: tablewatch's columns and predicate, as plain SQL."""
    return (
        f"SELECT {', '.join(COLUMNS)} FROM {TABLE} "
        f"WHERE ts >= '{day.isoformat()}' AND ts < '{(day + timedelta(days=1)).isoformat()}'"
    )


# -- databases ----------------------------------------------------------------------------
def pg_urls(base: str, schema: str) -> tuple[str, str, str]:
    """(SQLAlchemy URL into ``schema``, ADBC/libpq URI into it, SQLAlchemy URL of the server)."""
    libpq = base.replace("postgresql+psycopg://", "postgresql://", 1).replace("postgres://", "postgresql://", 1)
    sep = "&" if "?" in libpq else "?"
    adbc = libpq + f"{sep}options={quote(f'-csearch_path={schema}')}"

    def with_driver(url: str) -> str:
        return url.replace("postgresql://", "postgresql+psycopg://", 1)

    return with_driver(adbc), adbc, with_driver(libpq)


def adbc_driver(ctx: dict[str, Any]):
    if ctx["db"] == "postgres":
        import adbc_driver_postgresql.dbapi as driver
    else:
        import adbc_driver_sqlite.dbapi as driver
    return driver


def adbc_connect(ctx: dict[str, Any], autocommit: bool = False):
    return adbc_driver(ctx).connect(ctx["adbc_uri"], autocommit=autocommit)


def engine(url: str):
    import sqlalchemy as sa

    return sa.create_engine(url)


def scalar(url: str, sql: str, **params: Any) -> Any:
    import sqlalchemy as sa

    eng = engine(url)
    try:
        with eng.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar()
    finally:
        eng.dispose()


def rows_of(url: str, sql: str, **params: Any) -> list[dict[str, Any]]:
    import sqlalchemy as sa

    eng = engine(url)
    try:
        with eng.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql), params)]
    finally:
        eng.dispose()


def table_exists(url: str, name: str) -> bool:
    import sqlalchemy as sa

    eng = engine(url)
    try:
        return sa.inspect(eng).has_table(name)
    finally:
        eng.dispose()


def server_version(ctx: dict[str, Any]) -> str:
    if ctx["db"] == "postgres":
        return "PostgreSQL " + str(scalar(ctx["source_url"], "SHOW server_version"))
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}"


def context_for(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Where everything lives for this database and work directory."""
    if args.db == "postgres":
        source_url, adbc_uri, admin_url = pg_urls(args.pg_url, args.schema)
        results_url = source_url
    else:
        source_url = f"sqlite:///{workdir / 'source.db'}"
        results_url = f"sqlite:///{workdir / 'results.db'}"
        adbc_uri, admin_url = str(workdir / "source.db"), None
    return {
        "db": args.db,
        "workdir": str(workdir),
        "schema": args.schema if args.db == "postgres" else None,
        "source_url": source_url,
        "results_url": results_url,
        "adbc_uri": adbc_uri,
        "admin_url": admin_url,
        "config": str(workdir / "monitors.yaml"),
        "monitor": MONITOR,
        "naive_method": args.naive_method,
    }


# -- build --------------------------------------------------------------------------------
def config_yaml(ctx: dict[str, Any], synth: Synth, detector: str, train_days: int) -> str:
    lo, hi = synth.bounds("f01")
    return f"""\
# Written by benchmarks/e2e.py; replaced by every build.
results: "{ctx["results_url"]}"
models: models
monitors:
  - name: {MONITOR}
    source: "{ctx["source_url"]}"
    table: {TABLE}
    partition_column: ts
    key: id
    features: [{", ".join(FEATURES)}]
    detector: {{name: {detector}}}
    training: {{window: {train_days}, retrain_every: 7, min_partitions: {train_days}}}
    threshold: {{contamination: {OUTLIER_SHARE}}}
    store_scores: true
    expectations:
      - {{expect: not_null, column: f00}}
      - {{expect: not_null, column: f19, mostly: 0.99}}
      - {{expect: between, column: f01, min: {lo}, max: {hi}}}
      - {{expect: in_set, column: cat_a, values: [{", ".join(CAT_A)}]}}
      - {{expect: row_count_between, min: 1}}
"""


def reset_storage(ctx: dict[str, Any]) -> None:
    workdir = Path(ctx["workdir"])
    for name in ("source.db", "results.db", "models", "monitors.yaml", MANIFEST):
        for path in workdir.glob(name + "*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
    if ctx["db"] == "postgres":
        import sqlalchemy as sa

        admin = engine(ctx["admin_url"])
        try:
            with admin.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{ctx["schema"]}" CASCADE'))
                conn.execute(sa.text(f'CREATE SCHEMA "{ctx["schema"]}"'))
        finally:
            admin.dispose()


def write_source(ctx: dict[str, Any], synth: Synth, days: list[tuple[date, int]]) -> int:
    """Create and fill the source table, day by day in chunks; returns rows written."""
    written = 0
    next_id = 1
    with adbc_connect(ctx, autocommit=True) as conn:
        cur = conn.cursor()
        cur.execute(source_ddl(ctx["db"]))
        for day, n in days:
            chunks = max(1, -(-n // CHUNK_ROWS))
            for c in range(chunks):
                size = n // chunks + (1 if c < n % chunks else 0)
                table = arrow_chunk(synth.chunk(day, c, chunks, size, next_id), ctx["db"])
                cur.adbc_ingest(TABLE, table, mode="append")
                next_id += size
                written += size
                progress(f"  {day} chunk {c + 1}/{chunks}: {written:,} rows written")
        cur.execute(f"CREATE INDEX ix_{TABLE}_ts ON {TABLE} (ts)")
        cur.execute(f"VACUUM ANALYZE {TABLE}" if ctx["db"] == "postgres" else "ANALYZE")
        cur.close()
    return written


def build(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    """Source table, config and the model the timed run loads; returns the manifest."""
    synth = Synth(args.seed)
    train_day = BENCH_DAY - timedelta(days=1)
    earlier = [BENCH_DAY - timedelta(days=i) for i in range(args.train_days + 1, 0, -1)]
    progress(
        f"building {TABLE}: {len(earlier)} earlier partitions x {args.train_rows:,} rows "
        f"({earlier[0]}..{earlier[-1]}) and {args.rows:,} rows on {BENCH_DAY}"
    )
    reset_storage(ctx)
    started = time.perf_counter()
    written = write_source(ctx, synth, [(d, args.train_rows) for d in earlier] + [(BENCH_DAY, args.rows)])
    write_seconds = time.perf_counter() - started
    Path(ctx["config"]).write_text(config_yaml(ctx, synth, args.detector, args.train_days))
    progress(f"source written in {write_seconds:.1f} s; training run of monitor_table for {train_day} ...")
    trained = run_child("train", ctx, {"day": train_day.isoformat()})
    if trained["status"] != "succeeded" or not trained["model_version"]:
        raise SystemExit(f"the training run for {train_day} did not produce a model: {trained}")
    manifest = {
        "db": ctx["db"],
        "schema": ctx["schema"],
        "rows": args.rows,
        "train_days": args.train_days,
        "train_rows": args.train_rows,
        "detector": args.detector,
        "seed": args.seed,
        "bench_day": BENCH_DAY.isoformat(),
        "train_day": train_day.isoformat(),
        "rows_written": written,
        "write_seconds": round(write_seconds, 3),
        "training_run_seconds": trained["seconds"],
        "training_run_peak_rss_mb": trained["peak_rss_mb"],
        "model_version": trained["model_version"],
        "built_at": datetime.now().isoformat(timespec="seconds"),
    }
    (Path(ctx["workdir"]) / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def reuse(args: argparse.Namespace, ctx: dict[str, Any]) -> dict[str, Any]:
    path = Path(ctx["workdir"]) / MANIFEST
    if not path.is_file():
        raise SystemExit(f"--skip-build: no earlier build in {ctx['workdir']} ({MANIFEST} missing)")
    manifest = json.loads(path.read_text())
    if manifest["db"] != ctx["db"] or manifest["schema"] != ctx["schema"]:
        raise SystemExit(f"--skip-build: {path} describes a {manifest['db']} build (schema {manifest['schema']})")
    for option in ("rows", "train_days", "train_rows", "detector", "seed"):
        given = getattr(args, option)
        if given is not None and given != manifest[option]:
            raise SystemExit(f"--skip-build: the last build used --{option.replace('_', '-')} {manifest[option]}")
    if not table_exists(ctx["source_url"], TABLE):
        raise SystemExit(f"--skip-build: table {TABLE} is gone; run without --skip-build")
    progress(
        f"reusing the build of {manifest['built_at']} ({manifest['rows']:,} rows, model {manifest['model_version']})"
    )
    return manifest


def warm_cache(ctx: dict[str, Any], day: date) -> float:
    """Read every page of the partition once, so no timed part pays for a cold cache alone."""
    started = time.perf_counter()
    with adbc_connect(ctx) as conn:
        cur = conn.cursor()
        end = day + timedelta(days=1)
        cur.execute(f"SELECT count(*), sum(f00) FROM {TABLE} WHERE ts >= '{day}' AND ts < '{end}'")
        cur.fetchall()
        cur.close()
    return time.perf_counter() - started


# -- children -----------------------------------------------------------------------------
def child_env(ctx: dict[str, Any]) -> dict[str, str]:
    env = dict(os.environ)
    env["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
    env["PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL"] = "WARNING"
    env.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if not env.get("PREFECT_API_URL"):
        # A temporary server with its own database in the work directory: concurrent test
        # sessions on this machine (and their ~/.prefect database) are left alone.
        env.setdefault("PREFECT_HOME", str(Path(ctx["workdir"]) / "prefect-home"))
        env.setdefault("PREFECT_SERVER_EPHEMERAL_ENABLED", "true")
        env.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "180")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


def run_child(part: str, ctx: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """Run one part in a fresh interpreter; its output goes to stderr, its figures come back as JSON."""
    with tempfile.TemporaryDirectory(prefix=f"e2e-{part}-") as tmp:
        ctx_path, result_path = Path(tmp) / "context.json", Path(tmp) / "result.json"
        ctx_path.write_text(json.dumps({**ctx, **extra}))
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", part]
        cmd += ["--context", str(ctx_path), "--result", str(result_path)]
        proc = subprocess.run(cmd, stdout=sys.stderr, env=child_env(ctx), check=False)
        if proc.returncode != 0 or not result_path.is_file():
            raise SystemExit(f"part {part!r} failed (exit status {proc.returncode}); its output is above")
        return json.loads(result_path.read_text())


def _load_spec(ctx: dict[str, Any]):
    from tasks.spec import load_config

    return load_config(ctx["config"]).monitor(ctx["monitor"])


def _warm_prefect() -> float:
    """Start Prefect's temporary API with a trivial flow (about 20 s the first time)."""
    from prefect import flow

    @flow(name="e2e-warm-up")
    def warm_up() -> int:
        return 1

    started = time.perf_counter()
    warm_up()
    return time.perf_counter() - started


NUMPY_ONLY = {"zscore", "mad", "iqr", "knn"}
"""Detectors that never import Keras (warming it up for them would inflate their peak RSS)."""


def _warm_libraries(validation: bool, detector: str) -> float:
    """Import what a long-running worker has imported already: Keras/TensorFlow (both
    timed parts load a model that may need it) and, for tablewatch, the Great
    Expectations context. One-off per process (about 3.5 s for GX, 2.6 s for TF), so
    not part of a run's cost; the naive reference gets the same TF warm-up."""
    started = time.perf_counter()
    if detector not in NUMPY_ONLY:
        import keras  # noqa: F401

    if validation:
        from tasks.validate import _batch_definition

        _batch_definition()
    return time.perf_counter() - started


def child_train(ctx: dict[str, Any]) -> dict[str, Any]:
    import flows  # noqa: F401  (telemetry defaults before Prefect is imported)
    from flows.monitor import monitor_table

    spec = _load_spec(ctx)
    started = time.perf_counter()
    summary = monitor_table(spec, date.fromisoformat(ctx["day"]))
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "status": summary.status,
        "model_version": summary.model_version,
        "error": summary.error,
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child_tablewatch(ctx: dict[str, Any]) -> dict[str, Any]:
    import flows  # noqa: F401
    from flows.monitor import monitor_table

    spec = _load_spec(ctx)
    warm_up = _warm_prefect() + _warm_libraries(validation=True, detector=spec.detector.name)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    summary = monitor_table(spec, date.fromisoformat(ctx["day"]))
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 4),
        "warm_up_seconds": round(warm_up, 3),
        "peak_rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "run_id": summary.run_id,
        "status": summary.status,
        "rows_read": summary.rows_read,
        "anomalies": summary.anomalies,
        "model_version": summary.model_version,
        "error": summary.error,
    }


def child_naive(ctx: dict[str, Any]) -> dict[str, Any]:
    import uuid

    import pandas as pd

    from tasks.score import score_partition
    from tasks.train import current_model_row, load_model

    spec = _load_spec(ctx)
    _warm_libraries(validation=False, detector=spec.detector.name)
    day = date.fromisoformat(ctx["day"])
    source, results = engine(ctx["source_url"]), engine(ctx["results_url"])
    method = None if ctx["naive_method"] == "none" else "multi"
    run_id = str(uuid.uuid4())
    stages: dict[str, float] = {}
    rss_before = peak_rss_mb()

    def timed(name: str, call):
        started = time.perf_counter()
        out = call()
        stages[name] = round(time.perf_counter() - started, 4)
        return out

    def to_sql(frame: pd.DataFrame, name: str) -> None:
        chunksize = NAIVE_MULTI_CHUNK if method == "multi" else None  # one statement per row otherwise
        frame.to_sql(name, results, if_exists="replace", index=False, method=method, chunksize=chunksize)

    frame = timed("read_sql", lambda: pd.read_sql(partition_select(day), source))
    model = timed("load_model", lambda: load_model(current_model_row(spec, day)))
    matrix = timed("normalise", lambda: model.normaliser.transform(frame))
    scored = timed("score", lambda: score_partition(frame, matrix, model, spec))
    tags = {"monitor": spec.name, "partition_date": day, "run_id": run_id, "model_version": model.version}

    def anomaly_records() -> None:
        records = scored.anomalies.assign(contributions=scored.anomalies["contributions"].map(json.dumps), **tags)
        to_sql(records, "naive_anomalies")

    def score_records() -> None:
        scores = pd.DataFrame(
            {
                "row_key": frame[spec.key].astype(str),
                "score": scored.scores.astype(float),
                "is_anomaly": scored.scores > scored.threshold,
            }
        ).assign(**tags)
        to_sql(scores, "naive_scores")

    timed("to_sql anomalies", anomaly_records)
    timed("to_sql scores", score_records)
    return {
        "seconds": round(sum(stages.values()), 4),
        "stages": stages,
        "rows": int(len(frame)),
        "anomalies": int(scored.anomaly_count),
        "model_version": model.version,
        "method": ctx["naive_method"],
        "peak_rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child_raw(ctx: dict[str, Any]) -> dict[str, Any]:
    day = date.fromisoformat(ctx["day"])
    adbc_driver(ctx)  # import (and load the driver library) before anything is timed
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    conn = adbc_connect(ctx)
    connect = time.perf_counter() - started
    cur = conn.cursor()
    started = time.perf_counter()
    cur.execute(partition_select(day))
    table = cur.fetch_arrow_table()
    seconds = time.perf_counter() - started
    rows = table.num_rows
    cur.close()
    conn.close()
    return {
        "seconds": round(seconds, 4),
        "connect_seconds": round(connect, 4),
        "rows": rows,
        "arrow_mb": round(table.nbytes / 2**20, 1),
        "peak_rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def child_extract(ctx: dict[str, Any]) -> dict[str, Any]:
    """tablewatch's reader alone (``tasks.extract.stream_range``: ADBC batches to pandas), nothing overlapping."""
    from datetime import timedelta

    from tasks.extract import open_partition, stream_range

    spec = _load_spec(ctx)
    day = date.fromisoformat(ctx["day"])
    adbc_driver(ctx)
    rss_before = peak_rss_mb()
    started = time.perf_counter()
    partition = open_partition(spec, day)
    inspect = time.perf_counter() - started
    started = time.perf_counter()
    rows = sum(len(frame) for frame in stream_range(spec, partition.source, day, day + timedelta(days=1)))
    seconds = time.perf_counter() - started
    return {
        "seconds": round(seconds, 4),
        "inspect_seconds": round(inspect, 4),
        "rows": rows,
        "peak_rss_before_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


CHILDREN = {
    "train": child_train,
    "tablewatch": child_tablewatch,
    "naive": child_naive,
    "raw": child_raw,
    "extract": child_extract,
}


# -- results ------------------------------------------------------------------------------
def stored_run(ctx: dict[str, Any], day: date) -> dict[str, Any]:
    row = rows_of(
        ctx["results_url"],
        "SELECT run_id, status, rows_read, anomalies, model_version, stage_seconds, note, error "
        "FROM tw_runs WHERE monitor = :m AND partition_date = :d",
        m=MONITOR,
        d=day,
    )
    if not row:
        raise SystemExit(f"no tw_runs row for {MONITOR} {day}")
    out = row[0]
    if isinstance(out["stage_seconds"], str):
        out["stage_seconds"] = json.loads(out["stage_seconds"])
    return out


def model_versions(ctx: dict[str, Any]) -> dict[str, str]:
    found = rows_of(
        ctx["results_url"], "SELECT model_version, trained_for FROM tw_models WHERE monitor = :m", m=MONITOR
    )
    return {r["model_version"]: str(r["trained_for"]) for r in found}


def stored_scores(ctx: dict[str, Any], day: date) -> int | None:
    if not table_exists(ctx["results_url"], "tw_scores"):
        return None
    sql = "SELECT count(*) FROM tw_scores WHERE monitor = :m AND partition_date = :d"
    return int(scalar(ctx["results_url"], sql, m=MONITOR, d=day))


def rate(rows: int, seconds: float) -> str:
    return f"{rows / seconds:,.0f}" if seconds > 0 else "-"


def print_stage_table(title: str, rows: int, stages: dict[str, float], total: float, total_label: str) -> None:
    print(f"\n### {title}\n")
    print(f"| {'stage':<28} | {'seconds':>9} | {'rows/s':>12} |")
    print(f"|{'-' * 30}|{'-' * 11}|{'-' * 14}|")
    for name, seconds in stages.items():
        print(f"| {name:<28} | {seconds:9.3f} | {rate(rows, seconds):>12} |")
    print(f"| {'**' + total_label + '**':<28} | {total:9.3f} | {rate(rows, total):>12} |")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("numpy", "pandas", "pyarrow", "sqlalchemy", "psycopg", "prefect", "adbc-driver-manager"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "-"
    return out


def report(ctx: dict[str, Any], manifest: dict[str, Any], results: dict[str, Any]) -> dict[str, Any]:
    rows = manifest["rows"]
    env = results["environment"]
    lib = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    print(
        f"tablewatch e2e: {env['server']}, {rows:,} rows in partition {manifest['bench_day']}, "
        f"model {manifest['detector']} trained on {manifest['train_days']} x {manifest['train_rows']:,} rows, "
        f"{env['cpus']} CPUs, {env['machine']}; {lib}"
    )
    tw = results["tablewatch"]
    known = [k for k in STAGE_ORDER if k in tw["stage_seconds"]]
    names = known + sorted(set(tw["stage_seconds"]) - set(known))
    stages = {k: float(tw["stage_seconds"][k]) for k in names}
    other = tw["seconds"] - sum(v for k, v in stages.items() if k not in OVERLAPPED)
    print_stage_table(
        f"tablewatch: monitor_table (store_scores, model loaded), status {tw['status']}",
        rows,
        {**stages, "other (Prefect, bookkeeping)": other},
        tw["seconds"],
        "total (wall)",
    )
    scores = "no tw_scores table" if tw["tw_scores_rows"] is None else f"{tw['tw_scores_rows']:,} tw_scores rows"
    print(
        f"\n{tw['rows_read']:,} rows read, {tw['anomalies']:,} anomalies, {scores}; model {tw['model_version']} "
        f"{'loaded' if tw['model_loaded'] else 'NOT loaded (trained in the run: figures include training)'}; "
        f"peak RSS {tw['peak_rss_mb']:,.0f} MB ({tw['peak_rss_before_mb']:,.0f} MB before the run); "
        f"warm-up (Prefect server, Keras and GX imports) {tw['warm_up_seconds']:.1f} s not counted"
    )
    naive = results.get("naive")
    if naive:
        print_stage_table(
            f"naive reference: pandas read_sql / to_sql (method={naive['method']})",
            rows,
            naive["stages"],
            naive["seconds"],
            "total",
        )
        print(
            f"\n{naive['rows']:,} rows, {naive['anomalies']:,} anomalies; peak RSS {naive['peak_rss_mb']:,.0f} MB "
            f"({naive['peak_rss_before_mb']:,.0f} MB before)"
        )
    raw = results["raw"]
    print_stage_table("raw ADBC fetch (execute + fetch_arrow_table)", rows, {}, raw["seconds"], "fetch")
    print(
        f"\n{raw['rows']:,} rows, {raw['arrow_mb']:,.0f} MB of Arrow; connect {raw['connect_seconds']:.3f} s "
        f"not counted; peak RSS {raw['peak_rss_mb']:,.0f} MB"
    )

    alone = results.get("extract")
    if alone:
        print_stage_table(
            "tablewatch extraction alone (stream_range: ADBC batches of 100,000 rows to pandas)",
            rows,
            {"inspect (reflect the table)": alone["inspect_seconds"]},
            alone["seconds"],
            "read",
        )
        print(f"\n{alone['rows']:,} rows; peak RSS {alone['peak_rss_mb']:,.0f} MB")

    summary: dict[str, Any] = {"rows": rows}
    lines = []
    if alone and raw["seconds"] > 0:
        summary["extract_alone_vs_raw"] = round(alone["seconds"] / raw["seconds"], 3)
        lines.append(
            f"| extraction alone / raw ADBC fetch | {summary['extract_alone_vs_raw']:.2f}x "
            f"({alone['seconds']:.3f} s vs {raw['seconds']:.3f} s) |"
        )
    if "extract_wait" in stages:
        lines.append(
            f"| in the run: reading waited for / overlapped | {stages['extract_wait']:.3f} s / "
            f"{stages.get('extract', 0.0) - stages['extract_wait']:.3f} s |"
        )
    extract = stages.get("extract")
    if extract is not None and raw["seconds"] > 0:
        summary["extract_vs_raw"] = round(extract / raw["seconds"], 3)
        lines.append(
            f"| in the run: extraction (beside scoring, 2 threads) / raw ADBC fetch | {summary['extract_vs_raw']:.2f}x "
            f"({extract:.3f} s vs {raw['seconds']:.3f} s) |"
        )
        if "inspect" in stages:  # reflecting the table and opening the reader, before the rows flow
            with_inspect = extract + stages["inspect"]
            summary["extract_with_inspect_vs_raw"] = round(with_inspect / raw["seconds"], 3)
            lines.append(
                f"| (inspect + extraction) / raw ADBC fetch | {summary['extract_with_inspect_vs_raw']:.2f}x "
                f"({with_inspect:.3f} s vs {raw['seconds']:.3f} s) |"
            )
    if naive:
        summary["speedup_vs_naive"] = round(naive["seconds"] / tw["seconds"], 3)
        summary["anomalies_agree"] = naive["anomalies"] == tw["anomalies"]
        lines.append(
            f"| whole run speed-up over naive | {summary['speedup_vs_naive']:.2f}x "
            f"({tw['seconds']:.3f} s vs {naive['seconds']:.3f} s) |"
        )
        lines.append(
            f"| anomalies tablewatch / naive | {tw['anomalies']:,} / {naive['anomalies']:,} "
            f"({'agree' if summary['anomalies_agree'] else 'DIFFER'}) |"
        )
    summary["peak_rss_mb"] = {
        part: results[part]["peak_rss_mb"] for part in ("tablewatch", "naive", "raw", "extract") if results.get(part)
    }
    rss = ", ".join(f"{part} {mb:,.0f} MB" for part, mb in summary["peak_rss_mb"].items())
    lines.append(f"| peak RSS | {rss} |")
    print("\n### summary\n")
    print("| measure | value |")
    print("|---|---|")
    print("\n".join(lines))
    return summary


# -- main ---------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=None, help="rows in the benchmark partition (1,000,000)")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--pg-url",
        default=os.environ.get("TABLEWATCH_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="PostgreSQL server (libpq URL); default $TABLEWATCH_TEST_PG_URL or the local test server",
    )
    parser.add_argument("--schema", default="tw_bench", help="PostgreSQL schema, dropped and recreated by a build")
    parser.add_argument("--train-days", type=int, default=None, help="partitions the model is trained on (3)")
    parser.add_argument("--train-rows", type=int, default=None, help="rows per earlier partition (50,000)")
    parser.add_argument("--detector", default=None, help="detector of the monitor (default: ensemble, the product's)")
    parser.add_argument("--seed", type=int, default=None, help="data seed (0)")
    parser.add_argument("--skip-naive", action="store_true", help="leave out the naive reference (large N)")
    parser.add_argument("--naive-method", choices=("none", "multi"), default="none", help="DataFrame.to_sql method")
    parser.add_argument("--skip-build", action="store_true", help="reuse the last build's table, config and model")
    parser.add_argument("--workdir", type=Path, default=None, help="default: <tmp>/tablewatch-e2e-<db>[-<schema>]")
    parser.add_argument("--json", type=Path, default=None, help="write every figure here")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    parser.add_argument("--context", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if not args.skip_build:
        defaults = {"rows": 1_000_000, "train_days": 3, "train_rows": 50_000, "detector": "ensemble", "seed": 0}
        for name, value in defaults.items():
            if getattr(args, name) is None:
                setattr(args, name, value)
        if args.rows < 100 or args.train_rows < 100 or args.train_days < 1:
            parser.error("--rows and --train-rows must be at least 100, --train-days at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        ctx = json.loads(args.context.read_text())
        result = CHILDREN[args.child](ctx)
        args.result.write_text(json.dumps(result, default=str))
        return 0

    default = f"tablewatch-e2e-{args.db}" + (f"-{args.schema}" if args.db == "postgres" else "")
    workdir = (args.workdir or Path(tempfile.gettempdir()) / default).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = context_for(args, workdir)
    manifest = reuse(args, ctx) if args.skip_build else build(args, ctx)
    day = date.fromisoformat(manifest["bench_day"])
    results: dict[str, Any] = {
        "environment": {
            "cpus": os.cpu_count(),
            "machine": f"{platform.system()} {platform.machine()}",
            "server": server_version(ctx),
            "db": ctx["db"],
            "versions": versions(),
        },
        "build": manifest,
    }
    results["cache_warm_seconds"] = round(warm_cache(ctx, day), 3)
    before = model_versions(ctx)

    progress(f"raw ADBC fetch of {day} ...")
    results["raw"] = run_child("raw", ctx, {"day": day.isoformat()})
    progress(f"tablewatch extraction alone of {day} ...")
    results["extract"] = run_child("extract", ctx, {"day": day.isoformat()})
    progress(f"tablewatch run for {day} (Prefect warm-up first) ...")
    tw = run_child("tablewatch", ctx, {"day": day.isoformat()})
    stored = stored_run(ctx, day)
    after = model_versions(ctx)
    tw["stage_seconds"] = stored["stage_seconds"] or {}
    tw["note"] = stored["note"]
    tw["model_loaded"] = tw["model_version"] in before and set(after) == set(before)
    tw["tw_scores_rows"] = stored_scores(ctx, day)
    results["tablewatch"] = tw
    if tw["status"] != "succeeded":
        raise SystemExit(f"the tablewatch run ended {tw['status']}: {stored['error'] or stored['note']}")
    if not tw["model_loaded"]:
        progress(f"WARNING: the run did not load the prebuilt model (models before {before}, after {after})")
    if not args.skip_naive:
        progress(f"naive reference for {day} (to_sql method={args.naive_method}) ...")
        results["naive"] = run_child("naive", ctx, {"day": day.isoformat()})

    results["summary"] = report(ctx, manifest, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
        progress(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
