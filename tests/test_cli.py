"""The command line: user errors are one line with a non-zero exit, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import make_demo


def tablewatch(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", "from flows.cli import main; main()", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )


def test_help_lists_every_command():
    result = tablewatch("--help")
    assert result.returncode == 0
    for command in ("demo", "init", "run", "backfill", "report"):
        assert command in result.stdout


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "--config", "missing.yaml"], "does not exist"),
        (["report", "--config", "monitors.yaml", "--date", "2026-13-01"], "ISO date"),
        (["run", "--config", "monitors.yaml", "--monitor", "nope"], "no monitor named 'nope'"),
        (
            [
                "backfill",
                "--config",
                "monitors.yaml",
                "--monitor",
                "payments",
                "--start",
                "2026-10-05",
                "--end",
                "2026-10-01",
            ],
            "before",
        ),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, args, message):
    make_demo(tmp_path)
    result = tablewatch(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "args, message",
    [
        (["nosuch"], "No such command 'nosuch'"),
        (["db", "status"], "No such command 'status'"),
        (["run", "--confg", "monitors.yaml"], "No such option: --confg"),
        (["backfill", "--config", "monitors.yaml", "--start", "2026-10-01"], "Missing option"),
    ],
)
def test_usage_errors_exit_2_with_the_usage_not_as_unexpected_errors(tmp_path, args, message):
    result = tablewatch(*args, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Usage:" in result.stderr
    assert "unexpected error" not in result.stderr and "Traceback" not in result.stderr


def test_invalid_config_names_monitor_field_and_value(tmp_path):
    config, _ = make_demo(tmp_path)
    config.write_text(config.read_text().replace("window: 5", "window: 0"))
    result = tablewatch("run", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 2
    assert "monitor 'payments'" in result.stderr and "training.window" in result.stderr and "got 0" in result.stderr


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    from tasks.spec import load_config

    assert tablewatch("init", "monitors.yaml", cwd=tmp_path).returncode == 0
    assert load_config(tmp_path / "monitors.yaml").monitors[0].name == "payments"
    again = tablewatch("init", "monitors.yaml", cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_init_creates_missing_directories_and_a_file_in_the_way_is_one_line(tmp_path):
    assert tablewatch("init", "conf/tw/monitors.yaml", cwd=tmp_path).returncode == 0
    assert (tmp_path / "conf" / "tw" / "monitors.yaml").is_file()
    (tmp_path / "afile").write_text("")
    for args, message in (
        (["init", "afile/monitors.yaml"], "cannot write afile/monitors.yaml: a file is in the way"),
        (["demo", "--workdir", "afile/demo"], "cannot use afile/demo as the demo directory: a file is in the way"),
    ):
        result = tablewatch(*args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "unexpected error" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_report_without_reports_says_what_exists(tmp_path):
    make_demo(tmp_path)
    result = tablewatch("report", "--config", "monitors.yaml", "--date", "2026-10-05", cwd=tmp_path)
    assert result.returncode == 1 and "no daily reports for 2026-10-05" in result.stderr
