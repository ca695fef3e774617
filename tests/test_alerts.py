"""Alerts: which runs cross a level, and delivery through apprise to a local HTTP receiver."""

from __future__ import annotations

import logging
import socket
import time
from datetime import date

import pytest

from tasks import alerts
from tasks.alerts import RunFacts, alert_message, alert_reasons, notify, redact_url
from tasks.spec import AlertSpec

DAY = date(2026, 11, 22)
FAST = "cto=1&rto=1"  # apprise's per-URL connect/read timeouts, so a dead target fails within seconds


def facts(status="succeeded", rate=0.052, severity="medium", **kw) -> RunFacts:
    values = dict(
        monitor="payments",
        partition_date=DAY,
        status=status,
        rows=1000,
        anomalies=52,
        anomaly_rate=rate,
        top_severity=severity,
        detail=None,
        run_id="run-123",
    )
    return RunFacts(**{**values, **kw})


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- reasons --------------------------------------------------------------------------
def test_anomaly_rate_crossing():
    spec = AlertSpec(anomaly_rate=0.05, quarantine=False, failure=False)
    assert alert_reasons(spec, facts(rate=0.052)) == ["anomaly rate 5.20% reached the alert level 5.00%"]
    assert alert_reasons(spec, facts(rate=0.05)) == ["anomaly rate 5.00% reached the alert level 5.00%"]
    assert alert_reasons(spec, facts(rate=0.049)) == []
    assert alert_reasons(spec, facts(rate=None)) == []
    assert alert_reasons(AlertSpec(), facts(rate=0.9)) == []  # no level, no alert


@pytest.mark.parametrize(
    ("level", "top", "alerts_"),
    [
        ("medium", "high", True),
        ("medium", "medium", True),
        ("medium", "low", False),
        ("high", "medium", False),
        ("low", "low", True),
        ("low", None, False),
        (None, "high", False),
    ],
)
def test_severity_ordering(level, top, alerts_):
    reasons = alert_reasons(AlertSpec(severity=level), facts(rate=None, severity=top))
    assert bool(reasons) is alerts_
    if alerts_:
        assert reasons == [f"an anomaly of severity {top} reached the alert level {level}"]


def test_quarantine_and_failure_switches():
    quarantined = facts("quarantined", rate=None, severity=None, anomalies=None)
    failed = facts("failed", rate=None, severity=None, anomalies=None, detail="OperationalError: no such table")
    assert "quarantined" in alert_reasons(AlertSpec(), quarantined)[0]
    assert alert_reasons(AlertSpec(quarantine=False), quarantined) == []
    assert alert_reasons(AlertSpec(), failed) == ["the run failed"]
    assert alert_reasons(AlertSpec(failure=False), failed) == []


def test_rate_and_severity_only_count_for_succeeded_runs_and_warming_up_never_alerts():
    spec = AlertSpec(anomaly_rate=0.01, severity="low")
    assert len(alert_reasons(spec, facts())) == 2
    assert alert_reasons(spec, facts("warming_up", detail="3 of 5 training partitions")) == []
    assert alert_reasons(spec, facts("quarantined")) == [alert_reasons(AlertSpec(), facts("quarantined"))[0]]


def test_no_urls_sends_nothing(monkeypatch):
    monkeypatch.setattr(alerts, "send_alert", lambda *a, **k: pytest.fail("send_alert called without urls"))
    outcome = notify(AlertSpec(anomaly_rate=0.05), facts())
    assert outcome.reasons and outcome.sent == 0 and outcome.failed == []
    assert outcome.summary.startswith("alert not sent (no alert urls configured): anomaly rate 5.20%")


def test_nothing_crossing_sends_nothing(receiver):
    (host, port), received = receiver
    outcome = notify(AlertSpec(urls=[f"json://{host}:{port}/hook"], anomaly_rate=0.5), facts())
    assert (outcome.reasons, outcome.sent, outcome.failed, received) == ([], 0, [], [])
    assert outcome.summary == "no alert: nothing crossed an alert level"


def test_message_names_the_partition_figures_detail_and_sql():
    title, body = alert_message(facts(rows=12345, anomalies=642, rate=0.052, detail="model v7"), ["because"])
    assert title == "tablewatch: payments 2026-11-22 succeeded"
    assert "- because" in body and "rows 12,345" in body and "anomalies 642" in body and "5.20%" in body
    assert "model v7" in body and "run-123" in body
    assert (
        "SELECT row_key, score, severity, contributions FROM tw_anomalies WHERE monitor = 'payments' "
        "AND partition_date = '2026-11-22' ORDER BY score DESC;" in body
    )


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("slack://T1JJ3T3L2/A1BRTD4JD/TIiajkdnlazkcOXrIdevi7FQ", "slack://***"),
        ("discord://4174216298/JHMHI8qBe7bk2ZwO5U711o3dV", "discord://***"),
        ("json://user:s3cret@127.0.0.1:8123/hook?token=abc", "json://127.0.0.1:8123/***"),
        ("jsons://hooks.example.com/services/x", "jsons://hooks.example.com/***"),
        ("mailto://me:pw@gmail.com", "mailto://gmail.com/***"),
        ("json://[::1]:8000/x", "json://[::1]:8000/***"),
        ("json://localhost:8000", "json://localhost:8000"),
        ("not a url s3cret", "***"),
    ],
)
def test_redact_url(url, shown):
    assert redact_url(url) == shown


# -- delivery -------------------------------------------------------------------------
def test_one_post_per_url_with_title_reason_and_sql(receiver):
    (host, port), received = receiver
    urls = [f"json://{host}:{port}/first?{FAST}", f"json://{host}:{port}/second?{FAST}"]
    outcome = notify(AlertSpec(urls=urls, anomaly_rate=0.05), facts())

    assert (outcome.sent, outcome.failed) == (2, [])
    assert outcome.summary.startswith("alert sent to 2 of 2 target(s): anomaly rate 5.20% reached")
    assert sorted(r["path"] for r in received) == ["/first", "/second"]
    for request in received:
        payload = request["json"]
        assert request["headers"]["Content-Type"] == "application/json"
        assert payload["title"] == "tablewatch: payments 2026-11-22 succeeded"
        assert payload["type"] == "warning"
        assert "anomaly rate 5.20% reached the alert level 5.00%" in payload["message"]
        assert "FROM tw_anomalies WHERE monitor = 'payments' AND partition_date = '2026-11-22'" in payload["message"]


def test_failed_run_is_sent_as_a_failure(receiver):
    (host, port), received = receiver
    outcome = notify(AlertSpec(urls=[f"json://{host}:{port}/hook?{FAST}"]), facts("failed", detail="boom"))
    assert outcome.sent == 1
    assert received[0]["json"]["type"] == "failure"
    assert "Detail: boom" in received[0]["json"]["message"]


def test_http_500_is_a_redacted_failure_not_an_exception(receiver):
    (host, port), received = receiver
    urls = [f"json://{host}:{port}/fail?{FAST}", f"json://{host}:{port}/ok?{FAST}"]
    outcome = notify(AlertSpec(urls=urls), facts("quarantined"))
    assert len(received) == 2  # the broken target does not hide the other
    assert (outcome.sent, outcome.failed) == (1, [f"json://{host}:{port}/***"])
    assert "alert sent to 1 of 2 target(s) (failed: json://" in outcome.summary


def test_refused_connection_fails_fast_without_exception():
    port = closed_port()
    started = time.monotonic()
    outcome = notify(AlertSpec(urls=[f"json://127.0.0.1:{port}/hook?{FAST}"]), facts("failed"))
    assert time.monotonic() - started < 3
    assert (outcome.sent, outcome.failed) == (0, [f"json://127.0.0.1:{port}/***"])


def test_unusable_urls_are_failed_and_redacted(receiver, caplog):
    (host, port), received = receiver
    urls = ["nosuchservice://tok3n/s3cret", "slack://", f"json://{host}:{port}/hook?{FAST}"]
    caplog.set_level(logging.WARNING)
    outcome = notify(AlertSpec(urls=urls), facts("failed"))
    assert (outcome.sent, outcome.failed) == (1, ["nosuchservice://***", "slack://***"])
    assert len(received) == 1
    assert "apprise cannot use this URL" in caplog.text
    assert "tok3n" not in caplog.text and "s3cret" not in caplog.text


def test_secrets_never_reach_outcome_summary_or_logs(receiver, caplog):
    (host, port), received = receiver
    dead = closed_port()
    urls = [
        f"json://user:s3cret@{host}:{port}/fail-hook-path?token=abc&{FAST}",
        f"json://user:s3cret@127.0.0.1:{dead}/dead-hook-path?token=abc&{FAST}",
    ]
    caplog.set_level(logging.DEBUG)  # apprise and urllib3 log the URL they post to at DEBUG
    outcome = notify(AlertSpec(urls=urls), facts("failed"))

    assert received[0]["headers"]["Authorization"].startswith("Basic ")  # credentials still used, just not shown
    assert outcome.failed == [f"json://{host}:{port}/***", f"json://127.0.0.1:{dead}/***"]
    assert any(r.name == "apprise" for r in caplog.records)  # apprise's own records were captured and checked
    assert any(r.name == "urllib3.connectionpool" for r in caplog.records)
    everything = "\n".join([*outcome.failed, outcome.summary, caplog.text])
    for secret in ("s3cret", "token=abc", "abc", "user:", "fail-hook-path", "dead-hook-path"):
        assert secret not in everything, secret
    assert "error=500" in caplog.text  # apprise's reason is kept, redacted


def test_apprise_logs_are_left_alone_outside_sending(caplog):
    caplog.set_level(logging.DEBUG)
    logging.getLogger("apprise").debug("posting to /fail-hook-path")
    assert "fail-hook-path" in caplog.text
