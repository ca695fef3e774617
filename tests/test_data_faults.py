"""Data faults: each ends in a quarantined run or a scored run with a recorded warning, never a crash.

A small demo table is backfilled once (so a model exists); each test copies that
directory, breaks the last day's data in one way, runs ``daily_monitoring`` for it and
checks the outcome in ``tw_runs`` and ``tw_validations``. The outcome chosen per fault
is documented in the README ("When the data is wrong").
"""

from __future__ import annotations

import math
import shutil
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import db_url, make_demo
from test_flows import execute, query

from flows.daily import backfill, daily_monitoring

pytestmark = pytest.mark.usefixtures("prefect_harness")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The small demo backfilled up to the day before its last one: the model for the last day exists."""
    base = tmp_path_factory.mktemp("faults-base")
    config, plan = make_demo(base)
    state = backfill(str(config), "payments", plan.start, plan.end - timedelta(days=1), return_state=True)
    assert state.is_completed(), state
    return base, plan


@pytest.fixture
def demo(trained, tmp_path):
    """A private copy of the trained demo: (config, plan, url)."""
    base, plan = trained
    shutil.copytree(base, tmp_path / "demo")
    config = tmp_path / "demo" / "monitors.yaml"
    return config, plan, db_url(config)


def run_day(config: Path, day):
    state = daily_monitoring(str(config), day, return_state=True)
    return state


def outcome(url: str, day) -> tuple[str, str | None, str | None]:
    ((status, note, error),) = query(
        url, "SELECT status, note, error FROM tw_runs WHERE partition_date = :day", day=day.isoformat()
    )
    return status, note, error


def failed_checks(url: str, day) -> dict[tuple[str, str | None], str]:
    rows = query(
        url,
        "SELECT expectation, column_name, severity FROM tw_validations WHERE partition_date = :day AND success = :f",
        day=day.isoformat(),
        f=False,
    )
    return {(e, c): s for e, c, s in rows}


DAY_FILTER = "date(created_at) = :day"


def test_an_emptied_partition_is_quarantined_as_empty(demo):
    config, plan, url = demo
    execute(url, f"DELETE FROM payments WHERE {DAY_FILTER}", day=plan.end.isoformat())
    assert run_day(config, plan.end).is_completed()
    status, note, _ = outcome(url, plan.end)
    assert status == "quarantined" and "no rows" in note
    assert failed_checks(url, plan.end)[("tablewatch_partition_not_empty", None)] == "critical"


def test_a_date_with_no_rows_at_all_is_quarantined_as_empty(demo):
    config, plan, url = demo
    day = plan.end + timedelta(days=30)
    assert run_day(config, day).is_completed()
    status, note, _ = outcome(url, day)
    assert status == "quarantined" and "no rows" in note


def test_a_dropped_feature_column_quarantines_and_names_it(demo):
    config, plan, url = demo
    execute(url, "ALTER TABLE payments DROP COLUMN latency_ms")
    assert run_day(config, plan.end).is_completed()
    status, note, _ = outcome(url, plan.end)
    assert status == "quarantined" and "latency_ms" in note
    assert failed_checks(url, plan.end)[("expect_column_to_exist", "latency_ms")] == "critical"


def test_a_renamed_feature_column_quarantines_and_names_the_old_name(demo):
    config, plan, url = demo
    execute(url, "ALTER TABLE payments RENAME COLUMN amount TO amount_eur")
    assert run_day(config, plan.end).is_completed()
    status, note, _ = outcome(url, plan.end)
    assert status == "quarantined" and "amount" in note
    assert ("expect_column_to_exist", "amount") in failed_checks(url, plan.end)


def test_an_added_column_is_ignored_and_the_partition_scored(demo):
    config, plan, url = demo
    execute(url, "ALTER TABLE payments ADD COLUMN fraud_score REAL", "UPDATE payments SET fraud_score = id * 0.5")
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"


def test_an_all_null_feature_quarantines(demo):
    config, plan, url = demo
    # latency_ms has only a warning-level not_null expectation: the built-in check still quarantines.
    execute(url, f"UPDATE payments SET latency_ms = NULL WHERE {DAY_FILTER}", day=plan.end.isoformat())
    assert run_day(config, plan.end).is_completed()
    status, note, _ = outcome(url, plan.end)
    assert status == "quarantined" and "latency_ms" in note
    assert failed_checks(url, plan.end)[("tablewatch_column_has_values", "latency_ms")] == "critical"


def test_duplicate_keys_are_scored_with_a_warning(demo):
    config, plan, url = demo
    day = plan.end.isoformat()
    execute(
        url,
        "ALTER TABLE payments RENAME TO payments_base",
        "CREATE VIEW payments AS SELECT * FROM payments_base UNION ALL "
        f"SELECT * FROM payments_base WHERE date(created_at) = '{day}' AND id % 50 = 0",
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    assert failed_checks(url, plan.end)[("tablewatch_key_unique", "id")] == "warning"


def test_timestamps_with_mixed_utc_offsets_are_scored_with_a_warning(demo):
    config, plan, url = demo
    execute(
        url,
        f"UPDATE payments SET created_at = created_at || '+02:00' WHERE id % 3 = 0 AND {DAY_FILTER}",
        f"UPDATE payments SET created_at = created_at || '-05:00' WHERE id % 3 = 1 AND {DAY_FILTER}",
        day=plan.end.isoformat(),
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    assert failed_checks(url, plan.end)[("tablewatch_one_utc_offset", "created_at")] == "warning"


def test_numbers_arriving_as_text_are_parsed_and_scored_with_a_warning(demo):
    config, plan, url = demo
    execute(
        url,
        "ALTER TABLE payments ADD COLUMN amount_text TEXT",
        "UPDATE payments SET amount_text = printf('%.2f', amount)",
        "UPDATE payments SET amount_text = 'n/a' WHERE id % 97 = 0 AND " + DAY_FILTER,
        "ALTER TABLE payments DROP COLUMN amount",
        "ALTER TABLE payments RENAME COLUMN amount_text TO amount",
        day=plan.end.isoformat(),
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    checks = failed_checks(url, plan.end)
    assert checks[("tablewatch_numbers_as_text", "amount")] == "warning"
    ((observed,),) = query(
        url,
        "SELECT observed_value FROM tw_validations WHERE expectation = 'tablewatch_numbers_as_text' "
        "AND partition_date = :day",
        day=plan.end.isoformat(),
    )
    assert "not numbers" in observed


def test_non_finite_and_huge_values_are_scored_and_flagged_with_finite_scores(demo):
    config, plan, url = demo
    day = plan.end.isoformat()
    ids = [r[0] for r in query(url, f"SELECT id FROM payments WHERE {DAY_FILTER} ORDER BY id LIMIT 3", day=day)]
    execute(
        url,
        "UPDATE payments SET payload_kb = 1e300 WHERE id = :a",
        "UPDATE payments SET discount_pct = 9e999 WHERE id = :b",  # +inf in SQLite
        "UPDATE payments SET latency_ms = -9e999 WHERE id = :c",
        a=ids[0],
        b=ids[1],
        c=ids[2],
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    flagged = dict(query(url, "SELECT row_key, score FROM tw_anomalies WHERE partition_date = :day", day=day))
    for i in ids:
        assert str(i) in flagged and flagged[str(i)] == flagged[str(i)] and abs(flagged[str(i)]) < float("inf")
    contributions = query(url, "SELECT contributions FROM tw_anomalies WHERE row_key = :k", k=str(ids[1]))[0][0]
    assert "Infinity" not in contributions and "NaN" not in contributions  # valid JSON everywhere
    checks = failed_checks(url, plan.end)
    assert checks[("tablewatch_finite_values", "discount_pct")] == checks[("tablewatch_finite_values", "latency_ms")]
    assert checks[("tablewatch_finite_values", "discount_pct")] == "warning"
    assert ("tablewatch_finite_values", "payload_kb") not in checks  # 1e300 is finite: an anomaly, not a fault


@pytest.mark.postgres
def test_nan_and_infinities_on_postgresql_are_missing_and_flagged_and_explanations_stay_valid_jsonb(scored_pg):
    """PostgreSQL's float8 holds NaN and +-Infinity (SQLite turns NaN into NULL): NaN is a missing
    value, infinities are scored as extremes with a warning, and the contributions (jsonb, which
    refuses NaN and Infinity) are written."""
    config, plan, url = scored_pg
    day = plan.end.isoformat()
    on_day = "created_at::date = :day AND latency_ms IS NOT NULL"
    ids = [r[0] for r in query(url, f"SELECT id FROM payments WHERE {on_day} ORDER BY id LIMIT 4", day=day)]
    ((nulls,),) = query(
        url, "SELECT COUNT(*) FROM payments WHERE created_at::date = :day AND latency_ms IS NULL", day=day
    )
    execute(
        url,
        "UPDATE payments SET latency_ms = 'NaN' WHERE id = :a",
        "UPDATE payments SET discount_pct = 'Infinity' WHERE id = :b",
        "UPDATE payments SET discount_pct = '-Infinity' WHERE id = :c",
        "UPDATE payments SET payload_kb = 1e300 WHERE id = :d",  # amount has a between: it would quarantine
        a=ids[0],
        b=ids[1],
        c=ids[2],
        d=ids[3],
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    flagged = dict(query(url, "SELECT row_key, score FROM tw_anomalies WHERE partition_date = :day", day=day))
    for i in ids[1:4]:
        assert math.isfinite(flagged[str(i)])
    checks = failed_checks(url, plan.end)
    assert checks[("tablewatch_finite_values", "discount_pct")] == "warning"
    assert ("tablewatch_finite_values", "latency_ms") not in checks  # NaN: missing, not infinite
    assert ("tablewatch_finite_values", "payload_kb") not in checks  # 1e300: finite
    ((observed,),) = query(
        url,
        "SELECT observed_value FROM tw_validations WHERE expectation = 'tablewatch_finite_values' "
        "AND partition_date = :day",
        day=day,
    )
    assert observed.startswith("2 infinite values (+inf 1, -inf 1)")
    ((observed,),) = query(
        url,
        "SELECT observed_value FROM tw_validations WHERE expectation = 'expect_column_values_to_not_be_null' "
        "AND column_name = 'latency_ms' AND partition_date = :day",
        day=day,
    )
    assert observed.startswith(f"{nulls + 1} unexpected")  # the NaN counted as one more missing latency


def test_a_partition_100x_larger_than_usual_is_scored_with_a_volume_warning(demo):
    config, plan, url = demo
    day = plan.end.isoformat()
    before, top = query(url, f"SELECT COUNT(*), MAX(id) FROM payments WHERE {DAY_FILTER}", day=day)[0]
    columns = "created_at, channel, country, items, amount, latency_ms, payload_kb, discount_pct"
    for _ in range(99):
        execute(
            url,
            f"INSERT INTO payments ({columns}) SELECT {columns} FROM payments WHERE {DAY_FILTER} AND id <= :top",
            day=day,
            top=top,  # the original rows only: 99 more copies of the day, not 2**99
        )
    assert query(url, f"SELECT COUNT(*) FROM payments WHERE {DAY_FILTER}", day=day)[0][0] >= 100 * before
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    ((rows_scored,),) = query(url, "SELECT rows_scored FROM tw_runs WHERE partition_date = :day", day=day)
    assert rows_scored == 100 * before  # every row scored, in bounded batches
    assert failed_checks(url, plan.end)[("tablewatch_row_count_vs_history", None)] == "warning"


def test_invalid_utf8_in_a_categorical_column_is_replaced_and_scored_with_a_warning(demo):
    config, plan, url = demo
    execute(
        url,
        f"UPDATE payments SET country = CAST(X'C328' AS TEXT) WHERE id % 10 = 0 AND {DAY_FILTER}",
        day=plan.end.isoformat(),
    )
    assert run_day(config, plan.end).is_completed()
    assert outcome(url, plan.end)[0] == "succeeded"
    assert failed_checks(url, plan.end)[("tablewatch_valid_utf8", "country")] == "warning"
