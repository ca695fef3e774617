"""Alerts: a partition that crosses one of its monitor's alert levels tells someone.

After a monitor-partition run ends, ``notify`` compares what happened (``RunFacts``) with
the monitor's ``alerts`` section (``tasks.spec.AlertSpec``: anomaly rate, severity,
quarantine, failure) and, when something crosses, sends one short markdown message
through apprise to every configured URL (Slack, webhooks, e-mail, ...), each URL on its
own so a broken one cannot hide the others' result.

An alert is a courtesy, not part of the result: delivery problems (an unknown service, a
refused connection, an HTTP 500) are logged and counted in ``AlertOutcome.failed`` but
never raised, so a broken webhook never fails the monitoring run. Alert URLs carry
secrets (tokens, passwords, webhook paths), so they are only ever shown redacted to
scheme and host (``slack://***``, ``json://127.0.0.1:8123/***``), in our own logs and,
through a filter on the ``apprise`` and ``urllib3`` loggers, in theirs too.
"""

from __future__ import annotations

import ipaddress
import itertools
import logging
import re
import threading
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, unquote

from prefect import task
from prefect.cache_policies import NO_CACHE

if TYPE_CHECKING:
    from tasks.spec import AlertSpec

log = logging.getLogger(__name__)

SEVERITY_ORDER = ("low", "medium", "high")
DETAIL_LIMIT = 600
"""Characters of the run's note or error quoted in the message body."""


@dataclass(frozen=True)
class RunFacts:
    """What one monitor-partition run ended with: all ``notify`` needs to decide and to tell."""

    monitor: str
    partition_date: date
    status: str  # succeeded | quarantined | warming_up | failed
    rows: int | None
    anomalies: int | None
    anomaly_rate: float | None
    top_severity: str | None  # low | medium | high, or None without anomalies
    detail: str | None  # the run's note or error
    run_id: str


@dataclass
class AlertDelivery:
    """How sending went: ``failed`` holds redacted URLs only (never tokens, passwords or paths)."""

    sent: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class AlertOutcome:
    reasons: list[str]
    sent: int
    failed: list[str]

    @property
    def summary(self) -> str:
        """One line for logs and the run's note."""
        if not self.reasons:
            return "no alert: nothing crossed an alert level"
        reasons = "; ".join(self.reasons)
        targets = self.sent + len(self.failed)
        if not targets:
            return f"alert not sent (no alert urls configured): {reasons}"
        failed = f" (failed: {', '.join(self.failed)})" if self.failed else ""
        return f"alert sent to {self.sent} of {targets} target(s){failed}: {reasons}"


# -- deciding -------------------------------------------------------------------------
def _pct(value: float) -> str:
    return f"{value:.2%}" if value >= 0.0001 else f"{value * 100:.2g}%"


def alert_reasons(spec: AlertSpec, facts: RunFacts) -> list[str]:
    """Plain-language reasons this run should alert; empty when nothing crosses a level.

    Anomaly rate and severity only count for succeeded runs (nothing else is scored);
    a warming-up run never alerts.
    """
    reasons: list[str] = []
    if facts.status == "succeeded":
        if spec.anomaly_rate is not None and facts.anomaly_rate is not None and facts.anomaly_rate >= spec.anomaly_rate:
            reasons.append(f"anomaly rate {_pct(facts.anomaly_rate)} reached the alert level {_pct(spec.anomaly_rate)}")
        if (
            spec.severity is not None
            and facts.top_severity in SEVERITY_ORDER
            and SEVERITY_ORDER.index(facts.top_severity) >= SEVERITY_ORDER.index(spec.severity)
        ):
            reasons.append(f"an anomaly of severity {facts.top_severity} reached the alert level {spec.severity}")
    elif facts.status == "quarantined" and spec.quarantine:
        reasons.append("the partition was quarantined (it failed a critical expectation and was not scored)")
    elif facts.status == "failed" and spec.failure:
        reasons.append("the run failed")
    return reasons


def _sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def alert_message(facts: RunFacts, reasons: list[str]) -> tuple[str, str]:
    """The notification's title and short markdown body."""
    title = f"tablewatch: {facts.monitor} {facts.partition_date.isoformat()} {facts.status}"
    lines = [f"**{facts.monitor}** partition {facts.partition_date.isoformat()}: **{facts.status}**", ""]
    lines += [f"- {reason}" for reason in reasons]
    figures = []
    if facts.rows is not None:
        figures.append(f"rows {facts.rows:,}")
    if facts.anomalies is not None:
        figures.append(f"anomalies {facts.anomalies:,}")
    if facts.anomaly_rate is not None:
        figures.append(f"anomaly rate {_pct(facts.anomaly_rate)}")
    if figures:
        lines += ["", ", ".join(figures)]
    if facts.detail:
        detail = facts.detail if len(facts.detail) <= DETAIL_LIMIT else facts.detail[:DETAIL_LIMIT] + " ..."
        lines += ["", f"Detail: {detail}"]
    # Shown to a person, never executed by tablewatch; the monitor name is a slug (tasks.spec) and
    # the date ISO, and both are quoted as SQL literals anyway.
    sql = (
        "SELECT row_key, score, severity, contributions FROM tw_anomalies "
        f"WHERE monitor = {_sql_literal(facts.monitor)} "
        f"AND partition_date = {_sql_literal(facts.partition_date.isoformat())} ORDER BY score DESC;"
    )
    lines += ["", f"Run: `{facts.run_id}`", "", "The day's anomalies, from the results database:"]
    lines += ["", "```sql", sql, "```"]
    return title, "\n".join(lines)


# -- redaction ------------------------------------------------------------------------
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}$")
_PUBLIC_QUERY_KEYS = {"cto", "rto", "method", "format", "overflow", "verify", "retry", "wait", "optional"}


def _split(url: str) -> tuple[str, str, str, str, str]:
    """scheme, userinfo, host[:port], path, query: a forgiving split (apprise URLs are not all RFC URLs)."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("#", 1)[0]
    rest, _, query = rest.partition("?")
    netloc, slash, path = rest.partition("/")
    userinfo, _, hostport = netloc.rpartition("@")
    return scheme, userinfo, hostport, slash + path, query


def _shown_host(hostport: str) -> str | None:
    """host[:port] when it is plainly a server address (IP, localhost, dotted name), else None (maybe a token)."""
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, tail = hostport[1:].partition("]")
        port = tail[1:] if tail.startswith(":") else ""
        shown_host = f"[{host}]"
    else:
        if hostport.count(":") == 1:
            host, port = hostport.split(":")
        shown_host = host
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host.lower() != "localhost" and not _HOSTNAME.match(host):
            return None
    if port and not port.isdigit():
        return None
    return f"{shown_host}:{port}" if port else shown_host


def redact_url(url: str) -> str:
    """Scheme and server only: ``slack://***``, ``json://127.0.0.1:8123/***``, ``***`` for non-URLs."""
    if "://" not in url:
        return "***"
    scheme, userinfo, hostport, path, query = _split(url)
    if not _SCHEME.match(scheme):
        return "***"
    shown = _shown_host(hostport)
    if shown is None:
        return f"{scheme.lower()}://***"
    hidden = userinfo or path.strip("/") or query
    return f"{scheme.lower()}://{shown}" + ("/***" if hidden else "")


def _secrets(url: str) -> set[str]:
    """The parts of ``url`` that must not reach any log: credentials, token hosts, path segments, query values."""
    found = {url, url.partition("://")[2]}
    scheme, userinfo, hostport, path, query = _split(url)
    if userinfo:
        user, _, password = userinfo.partition(":")
        found |= {userinfo, user, password}
    if _shown_host(hostport) is None:
        found |= {hostport, hostport.split(":")[0]}
    found |= set(path.split("/"))
    if query:
        found.add(query)
        found |= {v for k, v in parse_qsl(query, keep_blank_values=True) if k.lower() not in _PUBLIC_QUERY_KEYS}
    found |= {unquote(s) for s in found}
    return {s for s in found if len(s) >= 3}


class _RedactingFilter(logging.Filter):
    """Masks the secrets of the URLs being sent in apprise's and urllib3's log records.

    It also keeps, per sending thread, the last warning apprise gave (redacted), so the
    failure can be explained in our own log line.
    """

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._active: dict[int, frozenset[str]] = {}
        self._secrets: tuple[str, ...] = ()
        self.local = threading.local()

    def add(self, key: int, secrets: set[str]) -> None:
        with self._lock:
            self._active[key] = frozenset(secrets)
            self._refresh()

    def remove(self, key: int) -> None:
        with self._lock:
            self._active.pop(key, None)
            self._refresh()

    def _refresh(self) -> None:
        self._secrets = tuple(sorted(set().union(*self._active.values()), key=len, reverse=True))

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        secrets = self._secrets
        if not secrets:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: drop its arguments rather than risk them
            message = str(record.msg)
        redacted = self.redact(message)
        if redacted != message or record.args:
            record.msg, record.args = redacted, None
        if record.exc_info:  # a traceback may quote the URL: format it now, redacted
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.levelno >= logging.WARNING and record.name == "apprise":
            problems = getattr(self.local, "problems", None)
            if problems is not None:
                problems.append(redacted)
        return True


_FILTER = _RedactingFilter()
_KEYS = itertools.count()
_FILTERED_LOGGERS = ("apprise", "urllib3.connectionpool")


def _install_filter() -> None:
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def _logger() -> logging.Logger | logging.LoggerAdapter:
    """The Prefect run logger inside a flow or task (so it reaches the UI), else the module logger."""
    try:
        from prefect import get_run_logger
        from prefect.exceptions import MissingContextError
    except ImportError:  # pragma: no cover - prefect is a dependency
        return log
    try:
        return get_run_logger()
    except MissingContextError:
        return log


# -- sending --------------------------------------------------------------------------
def _send_one(apprise, url: str, title: str, body: str, notify_type) -> str | None:
    """Send to one URL; None when it was delivered, else why not (redacted)."""
    target = apprise.Apprise()
    if not target.add([url]):  # a list: a string would be split on commas and spaces
        return "apprise cannot use this URL (unknown service, or a token or host missing or malformed)"
    if not target.notify(body=body, title=title, notify_type=notify_type, body_format=apprise.NotifyFormat.MARKDOWN):
        return "delivery failed"
    return None


def send_alert(urls: list[str], title: str, body: str, *, failure: bool = False) -> AlertDelivery:
    """Send ``title`` and markdown ``body`` to each apprise URL, one notification per URL.

    Never raises for delivery problems: they are logged (URLs redacted) and listed, redacted,
    in ``AlertDelivery.failed``. ``failure`` marks the notification as a failure (else a warning)
    for services that show the difference.
    """
    delivery = AlertDelivery()
    if not urls:
        return delivery
    logger = _logger()
    try:
        import apprise
    except ImportError as exc:  # pragma: no cover - apprise comes with prefect
        logger.warning("alerts not sent: apprise is not installed (%s)", exc)
        delivery.failed = [redact_url(u) for u in urls]
        return delivery
    _install_filter()
    notify_type = apprise.NotifyType.FAILURE if failure else apprise.NotifyType.WARNING
    for url in urls:
        shown = redact_url(url)
        key = next(_KEYS)
        _FILTER.add(key, _secrets(url))
        _FILTER.local.problems = []
        try:
            why = _send_one(apprise, url, title, body, notify_type)
        except Exception as exc:  # a plugin bug must not fail the run either; its text may quote the URL
            why = f"{type(exc).__name__}: {_FILTER.redact(str(exc))}"
        finally:
            problems, _FILTER.local.problems = _FILTER.local.problems, None
            _FILTER.remove(key)
        if why is None:
            delivery.sent += 1
            continue
        delivery.failed.append(shown)
        detail = f" ({problems[-1]})" if problems else ""
        logger.warning("alert to %s not delivered: %s%s", shown, why, detail)
    return delivery


def notify(spec: AlertSpec, facts: RunFacts) -> AlertOutcome:
    """Alert ``spec``'s URLs when ``facts`` cross one of its levels; never raises for delivery problems."""
    reasons = alert_reasons(spec, facts)
    if not reasons or not spec.urls:
        return AlertOutcome(reasons, sent=0, failed=[])
    title, body = alert_message(facts, reasons)
    delivery = send_alert(list(spec.urls), title, body, failure=facts.status == "failed")
    return AlertOutcome(reasons, sent=delivery.sent, failed=delivery.failed)


alert_task = task(notify, name="alert", cache_policy=NO_CACHE)
