"""The full demo, as README command (a) runs it, against its own ground truth."""

from __future__ import annotations

import sqlite3

import pytest

from flows.demo import run_demo

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]


def test_demo_meets_its_accuracy_targets_and_stores_everything(tmp_path):
    result = run_demo(tmp_path)
    assert result.ok
    recall = {kind: found / injected for kind, injected, found in result.recall_by_kind}
    assert recall["point"] >= 0.8
    assert result.precision >= 0.5
    statuses = [r["status"] for r in result.runs]
    assert len(statuses) == 42 and statuses.count("quarantined") == 1
    with sqlite3.connect(result.database) as conn:
        (failed,) = conn.execute(
            "SELECT COUNT(*) FROM tw_validations v JOIN tw_runs r ON r.run_id = v.run_id "
            "WHERE r.status = 'quarantined' AND v.success = 0"
        ).fetchone()
        assert failed >= 1
        assert conn.execute("SELECT COUNT(*) FROM tw_daily_reports").fetchone()[0] == 42
        assert conn.execute("SELECT COUNT(*) FROM tw_models").fetchone()[0] >= 4
        assert (
            conn.execute("SELECT COUNT(*) FROM tw_anomalies WHERE contributions LIKE '%feature%'").fetchone()[0] > 100
        )
