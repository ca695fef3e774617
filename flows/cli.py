"""The ``tablewatch`` command.

Heavy imports (Prefect, TensorFlow, Great Expectations) happen inside the commands that
need them, so ``tablewatch --help`` answers at once. User errors print one line and exit
with status 2; failed monitor runs exit with status 1 after their summary.
"""

from __future__ import annotations

import os
import sys
from datetime import date, timedelta
from pathlib import Path

import typer
from rich.console import Console
from rich.markdown import Markdown
from rich.table import Table

app = typer.Typer(
    name="tablewatch",
    help="Batch anomaly monitoring for SQL tables: validate each day's partition, score it, "
    "and write anomalies and daily reports back to SQL.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Wide enough for the run table when output is piped (rich assumes 80 columns then).
out = Console(width=None if sys.stdout.isatty() else 140)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 140)

ConfigOption = typer.Option(..., "--config", "-c", help="Path to monitors.yaml.", show_default=False)


def _quiet_prefect(verbose: bool) -> None:
    """Prefect logs to the console at INFO; the CLI prints its own summary instead.

    Only the console handler is turned down: run logs still reach the Prefect API and UI.
    """
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "INFO" if verbose else "CRITICAL")
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "WARNING" if verbose else "CRITICAL")
    import flows  # noqa: F401  (sets the telemetry defaults)


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _day(value: str | None, what: str, default: date | None = None) -> date:
    from tasks.spec import parse_date

    if value is None:
        assert default is not None
        return default
    return parse_date(value, what)


def _print_runs(rows: list[dict]) -> None:
    if not rows:  # nothing was recorded (the results database could not be opened): the failure says why
        return
    table = Table(title="tablewatch runs", show_lines=False)
    for col in ("monitor", "partition", "status", "rows", "anomalies", "model"):
        table.add_column(col, no_wrap=True)
    table.add_column("detail", overflow="fold")
    colour = {"succeeded": "green", "quarantined": "yellow", "warming_up": "cyan", "failed": "red"}
    for r in rows:
        status = r["status"]
        detail = r.get("error") or r.get("note") or ""
        table.add_row(
            r["monitor"],
            str(r["partition_date"]),
            f"[{colour.get(status, 'white')}]{status}[/]",
            "" if r["rows_read"] is None else f"{r['rows_read']:,}",
            "" if r["anomalies"] is None else f"{r['anomalies']:,}",
            r["model_version"] or "",
            detail if len(detail) < 160 else detail[:157] + "...",
        )
    out.print(table)


def _stored_runs(ok: bool, read) -> list:
    """The tw_runs rows to show after a flow; none when a failed flow left the results database
    unreadable (its failure, printed already, says why: no second error about the same thing)."""
    try:
        return read()
    except Exception:
        if ok:
            raise
        return []


def _run_flow(call) -> bool:
    """Run a flow, returning False when it failed; its per-run results are in tw_runs either way."""
    state = call(return_state=True)
    if state.is_completed():
        return True
    exc = state.result(raise_on_failure=False)
    err.print(f"[bold red]failed:[/] {exc}", highlight=False, soft_wrap=True)
    return False


@app.command()
def demo(
    workdir: Path = typer.Option(
        Path("tablewatch-demo"), "--workdir", "-w", help="Directory for the demo database, config and models."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's run logs."),
) -> None:
    """Build a synthetic payments table with known anomalies and monitor 42 days of it."""
    _quiet_prefect(verbose)
    try:
        workdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        from tasks.errors import path_problem

        _fail(f"cannot use {workdir} as the demo directory: {path_problem(exc)}")
    from flows.demo import run_demo

    out.print(f"Writing the demo source table and monitors.yaml to [bold]{workdir}[/] ...")
    result = run_demo(workdir, progress=lambda msg: out.print(msg))
    _print_runs(result.runs)
    out.print()
    table = Table(title="Accuracy against demo_ground_truth (scored partitions)")
    for col in ("kind", "injected", "found", "recall"):
        table.add_column(col)
    for kind, injected, found in result.recall_by_kind:
        table.add_row(kind, str(injected), str(found), f"{found / injected:.2f}" if injected else "n/a")
    out.print(table)
    out.print(
        f"Precision over all {result.flagged} anomaly records: [bold]{result.precision:.2f}[/] "
        f"({result.true_positives} injected)."
    )
    out.print(
        f"\nDone in {result.seconds:.0f} s. Results are in [bold]{result.database}[/] "
        f"(tw_runs, tw_anomalies, tw_daily_reports, tw_models, tw_validations).\n"
        f"Try: tablewatch report --config {result.config} --date {result.last_day}"
    )
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def init(
    path: Path = typer.Argument(Path("monitors.yaml"), help="Where to write the example config."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing file."),
) -> None:
    """Write an annotated example monitors.yaml to start from."""
    from importlib.resources import files

    if path.exists() and not force:
        _fail(f"{path} already exists (use --force to overwrite)")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files("tasks").joinpath("templates/monitors.example.yaml").read_text())
    except OSError as exc:
        from tasks.errors import path_problem

        _fail(f"cannot write {path}: {path_problem(exc)}")
    out.print(f"Wrote {path}. Edit the source URL, table and columns, then: tablewatch run --config {path}")


@app.command()
def run(
    config: Path = ConfigOption,
    monitor: str | None = typer.Option(None, "--monitor", "-m", help="Only this monitor (default: all)."),
    partition: str | None = typer.Option(
        None, "--partition", "-p", help="Partition date, YYYY-MM-DD (default: yesterday)."
    ),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's run logs."),
) -> None:
    """Monitor one partition (default: yesterday) of every monitor, or of one."""
    from tasks.spec import load_config

    cfg = load_config(config)
    names = [cfg.monitor(monitor).name] if monitor else [m.name for m in cfg.monitors]
    day = _day(partition, "--partition", date.today() - timedelta(days=1))
    _quiet_prefect(verbose)
    from flows.daily import daily_monitoring
    from tasks.store import runs_for

    ok = _run_flow(lambda **kw: daily_monitoring(str(config), day, names, **kw))
    _print_runs(_stored_runs(ok, lambda: runs_for(cfg, names, day, day)))
    if not ok:
        raise typer.Exit(1)


@app.command()
def backfill(
    config: Path = ConfigOption,
    monitor: str = typer.Option(..., "--monitor", "-m", help="The monitor to backfill.", show_default=False),
    start: str = typer.Option(..., "--start", help="First partition, YYYY-MM-DD.", show_default=False),
    end: str = typer.Option(..., "--end", help="Last partition, YYYY-MM-DD (inclusive).", show_default=False),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's run logs."),
) -> None:
    """Monitor a range of partitions of one monitor, oldest first."""
    from tasks.errors import ConfigError
    from tasks.spec import load_config

    cfg = load_config(config)
    cfg.monitor(monitor)
    first, last = _day(start, "--start"), _day(end, "--end")
    if last < first:
        raise ConfigError(f"--end {last} is before --start {first}")
    _quiet_prefect(verbose)
    from flows.daily import backfill as backfill_flow
    from tasks.store import runs_for

    ok = _run_flow(lambda **kw: backfill_flow(str(config), monitor, first, last, **kw))
    _print_runs(_stored_runs(ok, lambda: runs_for(cfg, [monitor], first, last)))
    if not ok:
        raise typer.Exit(1)


@app.command()
def serve(
    config: Path = ConfigOption,
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show Prefect's run logs."),
) -> None:
    """Serve one scheduled deployment per monitor (cron and time zone from the config) until stopped.

    Needs a Prefect API to register with: set PREFECT_API_URL (see 'prefect server start').
    """
    from tasks.spec import load_config

    cfg = load_config(config)
    _quiet_prefect(verbose)
    from prefect.settings import PREFECT_API_URL

    from flows.serve import deployment_plans, serve

    plans = deployment_plans(cfg, config)
    if not PREFECT_API_URL.value():
        out.print(
            "[yellow]PREFECT_API_URL is not set:[/] serving against a temporary local Prefect server that "
            "stops with this command. Start one with 'prefect server start' and export PREFECT_API_URL to keep "
            "the schedules and run history."
        )
    table = Table(title="tablewatch deployments (flow daily-monitoring)")
    for col in ("deployment", "cron", "time zone", "next run"):
        table.add_column(col, no_wrap=True)
    for plan in plans:
        table.add_row(f"daily-monitoring/{plan.name}", plan.cron, plan.timezone, f"{plan.next_run():%Y-%m-%d %H:%M %Z}")
    out.print(table)
    out.print("Serving; stop with Ctrl+C.")
    serve(plans)


@app.command()
def report(
    config: Path = ConfigOption,
    on: str | None = typer.Option(None, "--date", "-d", help="Report date, YYYY-MM-DD (default: yesterday)."),
    monitor: str | None = typer.Option(None, "--monitor", "-m", help="Only this monitor."),
) -> None:
    """Print the daily reports stored for a date."""
    from tasks.spec import load_config
    from tasks.store import daily_reports

    cfg = load_config(config)
    names = [cfg.monitor(monitor).name] if monitor else [m.name for m in cfg.monitors]
    day = _day(on, "--date", date.today() - timedelta(days=1))
    reports, latest = daily_reports(cfg, names, day)
    if not reports:
        hint = f"; the latest report is for {latest}" if latest else "; no reports are stored yet"
        _fail(f"no daily reports for {day}{hint}", code=1)
    for markdown in reports:
        out.print(Markdown(markdown))
        out.print()


db_app = typer.Typer(
    help="The results database's schema: upgrade it after installing a new tablewatch, or check where it stands.",
    no_args_is_help=True,
)
app.add_typer(db_app, name="db")


def _results_urls(config: Path) -> list[str]:
    """Every distinct results database of the config: the global one and any a monitor overrides it with."""
    from tasks.spec import load_config

    cfg = load_config(config)
    return list(dict.fromkeys([cfg.results, *(m.results_url for m in cfg.monitors)]))


@db_app.command("upgrade")
def db_upgrade(config: Path = ConfigOption) -> None:
    """Migrate every results database of the config to this version's schema; existing results are kept."""
    from tasks.db import redact
    from tasks.migrate import upgrade

    for url in _results_urls(config):
        before, after = upgrade(url)
        if before == after:
            out.print(f"{redact(url)}: already at {after}", highlight=False, markup=False, soft_wrap=True)
        else:
            out.print(f"{redact(url)}: {before or 'none'} -> {after}", highlight=False, markup=False, soft_wrap=True)


@db_app.command("current")
def db_current(config: Path = ConfigOption) -> None:
    """Show each results database's schema revision; exit 1 when any is not the one this version needs."""
    from tasks.db import redact
    from tasks.migrate import SchemaOutOfDateError, require_current

    behind = False
    for url in _results_urls(config):
        try:
            revision = require_current(url, config)
        except SchemaOutOfDateError as exc:
            behind = True
            out.print(
                str(exc), highlight=False, markup=False, soft_wrap=True
            )  # names the database, both revisions, the fix
        else:
            out.print(f"{redact(url)}: {revision} (current)", highlight=False, markup=False, soft_wrap=True)
    if behind:
        raise typer.Exit(1)


@db_app.command("views")
def db_views(config: Path = ConfigOption) -> None:
    """(Re)install the analyst views (tw_v_*) in every results database of the config, after upgrading its schema."""
    from tasks.db import redact
    from tasks.migrate import upgrade
    from tasks.views import install_views_url

    for url in _results_urls(config):
        upgrade(url)  # the views read the current tables (and 0003 installs them the first time)
        names = install_views_url(url)
        out.print(f"{redact(url)}: installed {', '.join(names)}", highlight=False, markup=False, soft_wrap=True)


def main() -> None:
    """Entry point: user errors become one line on stderr, never a traceback."""
    from tasks.errors import TablewatchError

    try:
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except TablewatchError as exc:
        err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Abort, KeyboardInterrupt):
        err.print("aborted")
        sys.exit(130)
    except Exception as exc:  # a click usage error or a bug: one line unless debugging
        # Typer ships its own copy of click (typer._click), whose exceptions are not click's:
        # recognise a usage error by what it can do rather than by its class.
        if callable(getattr(exc, "show", None)) and isinstance(getattr(exc, "exit_code", None), int):
            exc.show()
            sys.exit(exc.exit_code)
        if os.environ.get("TABLEWATCH_DEBUG"):
            raise
        err.print(
            f"[bold red]unexpected error:[/] {type(exc).__name__}: {exc} (set TABLEWATCH_DEBUG=1 for the traceback)",
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
