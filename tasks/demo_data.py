"""The demo's source table: a payments feed with seasonality, gaps and known anomalies.

Rows follow a daily profile (quiet nights, midday and evening peaks) and a weekly one
(fewer, larger baskets at weekends); amounts depend on items and country, latency on
channel and load, payload size on items, so the columns are correlated the way real
ones are. Injected, and listed in ``demo_ground_truth``:

- ``point``: one value far outside its range (amount, latency or payload);
- ``combination``: values that are each normal but not together (one item with the
  amount or payload of nine);
- ``shift``: a segment (one country, a few afternoon hours) whose latency drifts up.

One partition is broken on purpose: its ``amount`` column is entirely null, which the
demo's expectations must quarantine.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np
import pandas as pd
import sqlalchemy as sa

from tasks.db import get_engine

CHANNELS = {"web": 0.5, "app": 0.35, "pos": 0.15}
COUNTRIES = {"DE": 0.35, "FR": 0.2, "GB": 0.2, "NL": 0.15, "US": 0.1}
COUNTRY_PRICE = {"DE": 1.0, "FR": 0.95, "GB": 1.1, "NL": 1.0, "US": 1.25}
CHANNEL_LATENCY = {"web": 120.0, "app": 90.0, "pos": 60.0}
# Share of a day's traffic per hour: quiet nights, a lunchtime and an evening peak.
HOUR_PROFILE = np.array(
    [1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 5, 4.5, 4, 4, 4.5, 5, 6, 6.5, 5.5, 4, 2.5, 1.5]
)


@dataclass(frozen=True)
class DemoPlan:
    start: date = date(2026, 10, 1)
    days: int = 42
    rows_per_day: int = 2400
    point_per_day: int = 6
    combination_per_day: int = 4
    shift_days: tuple[int, ...] = (17, 29, 38)  # day offsets with a shifted segment
    broken_day: int = 24  # day offset whose amount column is all null
    seed: int = 7

    @property
    def end(self) -> date:
        return self.start + timedelta(days=self.days - 1)

    @property
    def broken_date(self) -> date:
        return self.start + timedelta(days=self.broken_day)


def generate(plan: DemoPlan = DemoPlan()) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The payments table and its ground truth (partition_date, row_key, kind)."""
    rng = np.random.default_rng(plan.seed)
    frames, truth = [], []
    next_id = 1
    for offset in range(plan.days):
        day = plan.start + timedelta(days=offset)
        weekend = day.weekday() >= 5
        n = int(plan.rows_per_day * (0.7 if weekend else 1.0) * rng.uniform(0.9, 1.1))
        frame = _normal_day(rng, day, n, weekend)
        frame.insert(0, "id", np.arange(next_id, next_id + n))
        next_id += n
        truth += _inject(rng, frame, day, plan, offset)
        if offset == plan.broken_day:
            frame["amount"] = np.nan
        frames.append(frame)
    payments = pd.concat(frames, ignore_index=True)
    ground_truth = pd.DataFrame(truth, columns=["partition_date", "row_key", "kind"])
    return payments, ground_truth


def _normal_day(rng: np.random.Generator, day: date, n: int, weekend: bool) -> pd.DataFrame:
    hours = rng.choice(24, size=n, p=HOUR_PROFILE / HOUR_PROFILE.sum())
    seconds = rng.integers(0, 3600, size=n)
    start = datetime(day.year, day.month, day.day)
    created = [start + timedelta(hours=int(h), seconds=int(s)) for h, s in zip(hours, seconds, strict=True)]
    channel = rng.choice(list(CHANNELS), size=n, p=list(CHANNELS.values()))
    country = rng.choice(list(COUNTRIES), size=n, p=list(COUNTRIES.values()))
    items = 1 + rng.poisson(np.where(channel == "pos", 1.0, 2.0 + 0.5 * weekend))
    unit_price = rng.lognormal(np.log(20.0), 0.3, size=n) * np.vectorize(COUNTRY_PRICE.get)(country)
    evening = 1.0 + 0.12 * ((hours >= 18) & (hours <= 22))
    amount = np.round(items * unit_price * evening * (1.1 if weekend else 1.0), 2)
    load = HOUR_PROFILE[hours] / HOUR_PROFILE.max()
    latency = np.vectorize(CHANNEL_LATENCY.get)(channel) * (1 + 0.6 * load) * rng.lognormal(0, 0.2, size=n)
    latency = np.round(latency, 1)
    latency[rng.random(n) < 0.02] = np.nan  # the collector drops ~2% of timings
    payload = np.round(2.0 + 1.5 * items + rng.normal(0, 0.4, size=n), 2)
    discount = np.where(rng.random(n) < 0.2, rng.integers(5, 31, size=n), 0).astype(float)
    frame = pd.DataFrame(
        {
            "created_at": created,
            "channel": channel,
            "country": country,
            "items": items,
            "amount": amount,
            "latency_ms": latency,
            "payload_kb": payload,
            "discount_pct": discount,
        }
    )
    return frame.sort_values("created_at", kind="stable").reset_index(drop=True)


def _inject(rng: np.random.Generator, frame: pd.DataFrame, day: date, plan: DemoPlan, offset: int) -> list[tuple]:
    truth: list[tuple] = []
    n_point, n_combo = plan.point_per_day, plan.combination_per_day
    rows = rng.choice(len(frame), size=n_point + n_combo, replace=False)
    for i, r in enumerate(rows[:n_point]):
        column = ("amount", "latency_ms", "payload_kb")[i % 3]
        base = frame.at[r, column]
        base = frame[column].median() if pd.isna(base) else base
        frame.at[r, column] = round(float(base) * rng.uniform(12, 30), 2)
        truth.append((day, str(frame.at[r, "id"]), "point"))
    for i, r in enumerate(rows[n_point:]):
        frame.at[r, "items"] = 1
        if i % 2 == 0:  # the amount of a nine-item basket on a single item
            frame.at[r, "amount"] = round(9 * 20.0 * rng.uniform(0.9, 1.1), 2)
            frame.at[r, "payload_kb"] = round(3.5 + rng.normal(0, 0.3), 2)
        else:  # the payload of a nine-item basket on a single item
            frame.at[r, "payload_kb"] = round(2.0 + 1.5 * 9 + rng.normal(0, 0.4), 2)
            frame.at[r, "amount"] = round(20.0 * rng.uniform(0.8, 1.2), 2)
        truth.append((day, str(frame.at[r, "id"]), "combination"))
    if offset in plan.shift_days:
        hours = frame["created_at"].map(lambda t: t.hour)
        segment = frame.index[(frame["country"] == "NL") & hours.between(14, 16)]
        frame.loc[segment, "latency_ms"] = np.round(frame.loc[segment, "latency_ms"] * 3.0 + 150, 1)
        truth += [(day, str(frame.at[r, "id"]), "shift") for r in segment]
    return truth


def write_demo_source(url: str, payments: pd.DataFrame, ground_truth: pd.DataFrame) -> None:
    """Create (replacing) ``payments`` and ``demo_ground_truth`` in the database at ``url``."""
    meta = sa.MetaData()
    payments_table = sa.Table(
        "payments",
        meta,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.DateTime, nullable=False, index=True),
        sa.Column("channel", sa.String(8)),
        sa.Column("country", sa.String(2)),
        sa.Column("items", sa.Integer),
        sa.Column("amount", sa.Float),
        sa.Column("latency_ms", sa.Float),
        sa.Column("payload_kb", sa.Float),
        sa.Column("discount_pct", sa.Float),
    )
    truth_table = sa.Table(
        "demo_ground_truth",
        meta,
        sa.Column("partition_date", sa.Date, nullable=False),
        sa.Column("row_key", sa.String(32), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
    )
    engine = get_engine(url)
    with engine.begin() as conn:
        meta.drop_all(conn, checkfirst=True)
        meta.create_all(conn)
        conn.execute(payments_table.insert(), _records(payments))
        conn.execute(truth_table.insert(), _records(ground_truth))


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as plain Python values, NaN as NULL."""
    out = frame.astype(object).where(frame.notna(), None)
    records = out.to_dict("records")
    for rec in records:
        for k, v in rec.items():
            if isinstance(v, pd.Timestamp):
                rec[k] = v.to_pydatetime()
            elif isinstance(v, np.generic):
                rec[k] = v.item()
    return records


def demo_config_yaml(db_file: str, plan: DemoPlan = DemoPlan()) -> str:
    """The demo's monitors.yaml: one monitor on the payments table."""
    return f"""\
# tablewatch demo: one monitor on a synthetic payments feed (see tasks/demo_data.py).
results: sqlite:///{db_file}
models: tablewatch-models
monitors:
  - name: payments
    source: sqlite:///{db_file}
    table: payments
    partition_column: created_at
    key: id
    features: [amount, items, latency_ms, payload_kb, discount_pct, channel, country]
    detector:
      name: ensemble
      params:
        members:
          - {{name: mad}}
          - {{name: knn}}
          - {{name: autoencoder, params: {{epochs: 30, batch_size: 512}}}}
    training: {{window: 14, retrain_every: 7, min_partitions: 7}}
    threshold: {{contamination: 0.005}}
    expectations:
      - {{expect: not_null, column: amount, mostly: 0.95}}
      - {{expect: between, column: amount, min: 0, max: 100000}}
      - {{expect: not_null, column: latency_ms, mostly: 0.9, severity: warning}}
      - {{expect: in_set, column: channel, values: [web, app, pos]}}
      - {{expect: unique, column: id}}
      - {{expect: row_count_between, min: 500}}
"""
