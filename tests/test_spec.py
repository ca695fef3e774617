"""tasks.spec: monitors.yaml parsing, env interpolation, error messages, path resolution."""

from __future__ import annotations

import copy
import textwrap
from datetime import date
from pathlib import Path

import pytest

from tasks.errors import ConfigError, TablewatchError
from tasks.spec import Between, NotNull, load_config, parse_config, parse_date


def monitor(name: str = "payments", **extra) -> dict:
    m = {
        "name": name,
        "source": "sqlite:///source.db",
        "table": "payments",
        "partition_column": "created_at",
        "key": "id",
    }
    m.update(extra)
    return m


def config(*monitors: dict, **top) -> dict:
    raw = {"results": "sqlite:///results.db", "models": "models-dir", "monitors": list(monitors) or [monitor()]}
    raw.update(top)
    return raw


def config_error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(raw)
    return str(info.value)


# -- valid configs -------------------------------------------------------------------
def test_parse_valid_config_fills_results_and_models_from_globals() -> None:
    raw = config(
        monitor("payments", features=["amount", "country"], detector={"name": "mad"}),
        monitor("orders", results="sqlite:///other.db", models="other-models"),
    )
    before = copy.deepcopy(raw)
    cfg = parse_config(raw)
    assert raw == before  # the input tree is not modified
    assert [m.name for m in cfg.monitors] == ["payments", "orders"]
    payments, orders = cfg.monitors
    assert payments.results == "sqlite:///results.db"
    assert payments.models == "models-dir"
    assert payments.results_url == "sqlite:///results.db"
    assert payments.models_dir == Path("models-dir")
    assert orders.results == "sqlite:///other.db"
    assert orders.models == "other-models"
    assert payments.features == ["amount", "country"]
    assert payments.detector.name == "mad"
    assert cfg.monitor("orders") is orders


def test_defaults() -> None:
    cfg = parse_config({"monitors": [monitor()]})
    m = cfg.monitors[0]
    assert cfg.results == "sqlite:///tablewatch.db"
    assert cfg.models == "tablewatch-models"
    assert m.results == cfg.results and m.models == cfg.models
    assert m.detector.name == "ensemble"
    assert m.training.window == 14 and m.training.retrain_every == 7
    assert m.training.required_partitions == 7
    assert m.threshold.contamination == 0.01
    assert m.expectations == [] and m.features is None and m.label is None


def test_expectations_are_typed() -> None:
    raw = config(
        monitor(
            expectations=[
                {"expect": "not_null", "column": "amount", "mostly": 0.99},
                {"expect": "between", "column": "amount", "min": 0, "max": 10, "severity": "warning"},
            ]
        )
    )
    exps = parse_config(raw).monitors[0].expectations
    assert isinstance(exps[0], NotNull) and exps[0].mostly == 0.99 and exps[0].severity == "critical"
    assert isinstance(exps[1], Between) and (exps[1].min, exps[1].max) == (0, 10)
    assert exps[1].severity == "warning"


def test_unknown_monitor_lookup_raises() -> None:
    with pytest.raises(ConfigError, match="nope"):
        parse_config(config()).monitor("nope")


# -- environment interpolation -------------------------------------------------------
def test_env_var_interpolation(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_PG_PASSWORD", "s3cret")
    monkeypatch.setenv("TW_TEST_TABLE", "orders")
    raw = config(
        monitor(table="${TW_TEST_TABLE}"),
        results="postgresql+psycopg://tw:${TW_TEST_PG_PASSWORD}@db:5432/mon",
    )
    cfg = parse_config(raw)
    assert cfg.results == "postgresql+psycopg://tw:s3cret@db:5432/mon"
    assert cfg.monitors[0].results == cfg.results
    assert cfg.monitors[0].table == "orders"


def test_env_var_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_TEST_UNSET_TABLE", raising=False)
    monkeypatch.delenv("TW_TEST_UNSET_KEY", raising=False)
    raw = config(monitor(table="${TW_TEST_UNSET_TABLE:-fallback_table}", key="id${TW_TEST_UNSET_KEY:-}"))
    m = parse_config(raw).monitors[0]
    assert m.table == "fallback_table"
    assert m.key == "id"  # an empty default is a default


def test_env_var_set_wins_over_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_TABLE", "from_env")
    m = parse_config(config(monitor(table="${TW_TEST_TABLE:-fallback}"))).monitors[0]
    assert m.table == "from_env"


def test_env_var_in_nested_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_FEATURE", "amount")
    monkeypatch.setenv("TW_TEST_WINDOW", "21")
    raw = config(monitor(features=["${TW_TEST_FEATURE}", "country"], training={"window": "${TW_TEST_WINDOW}"}))
    m = parse_config(raw).monitors[0]
    assert m.features == ["amount", "country"]
    assert m.training.window == 21


def test_missing_env_var_raises_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TW_TEST_MISSING_VAR", raising=False)
    message = config_error(config(monitor(source="postgresql://u:${TW_TEST_MISSING_VAR}@h/db")))
    assert "TW_TEST_MISSING_VAR" in message
    assert "source" in message


# -- validation errors name the monitor, field and bad value --------------------------
def test_training_window_zero() -> None:
    message = config_error(config(monitor("payments", training={"window": 0})))
    assert "payments" in message
    assert "training.window" in message
    assert "got 0" in message


def test_unknown_detector_name() -> None:
    message = config_error(config(monitor("payments", detector={"name": "nope"})))
    assert "payments" in message
    assert "detector.name" in message
    assert "'nope'" in message


def test_unknown_detector_parameter() -> None:
    message = config_error(config(monitor("payments", detector={"name": "mad", "params": {"epochs": 3}})))
    assert "payments" in message
    assert "detector" in message
    assert "epochs" in message


def test_contamination_belongs_under_threshold() -> None:
    message = config_error(config(monitor("payments", detector={"name": "mad", "params": {"contamination": 0.1}})))
    assert "contamination" in message and "threshold" in message


@pytest.mark.parametrize("value", [0, 0.5, 1.2, -0.1])
def test_threshold_contamination_range(value: float) -> None:
    message = config_error(config(monitor("payments", threshold={"contamination": value})))
    assert "payments" in message
    assert "threshold.contamination" in message
    assert f"got {value!r}" in message


def test_unknown_key_in_monitor() -> None:
    message = config_error(config(monitor("payments", colour="blue")))
    assert "payments" in message
    assert "colour" in message
    assert "'blue'" in message


def test_unknown_key_at_top_level() -> None:
    message = config_error(config(resluts="sqlite:///typo.db"))
    assert "resluts" in message


def test_between_with_min_greater_than_max() -> None:
    raw = config(monitor("payments", expectations=[{"expect": "between", "column": "amount", "min": 5, "max": 1}]))
    message = config_error(raw)
    assert "payments" in message
    assert "expectations.0" in message
    assert "min 5" in message and "max 1" in message


def test_unknown_expectation_type() -> None:
    message = config_error(config(monitor("payments", expectations=[{"expect": "bogus", "column": "a"}])))
    assert "payments" in message and "expectations.0" in message and "bogus" in message


def test_duplicate_monitor_names() -> None:
    message = config_error(config(monitor("payments"), monitor("orders"), monitor("payments")))
    assert "unique" in message
    assert "payments" in message
    assert "orders" not in message


@pytest.mark.parametrize("bad_name", ["my monitor", "", "-leading-dash", "semi;colon", "x" * 64])
def test_invalid_monitor_name(bad_name: str) -> None:
    message = config_error(config(monitor(bad_name)))
    assert "field 'name'" in message
    assert repr(bad_name) in message


def test_monitor_without_name_is_identified_by_position() -> None:
    second = monitor("orders")
    del second["name"]
    message = config_error(config(monitor("payments"), second))
    assert "#2" in message
    assert "name" in message


def test_min_partitions_larger_than_window() -> None:
    message = config_error(config(monitor("payments", training={"window": 3, "min_partitions": 5})))
    assert "payments" in message and "min_partitions 5" in message and "window 3" in message


def test_key_cannot_be_a_feature() -> None:
    message = config_error(config(monitor("payments", features=["id", "amount"])))
    assert "payments" in message and "'id'" in message


def test_empty_and_duplicate_feature_lists() -> None:
    assert "features" in config_error(config(monitor("payments", features=[])))
    message = config_error(config(monitor("payments", features=["a", "b", "a"])))
    assert "features" in message and "a" in message


def test_missing_required_field() -> None:
    m = monitor("payments")
    del m["table"]
    message = config_error(config(m))
    assert "payments" in message and "table" in message


@pytest.mark.parametrize("raw", [None, [], "monitors", {"monitors": []}, {}])
def test_not_a_usable_mapping(raw) -> None:
    with pytest.raises(ConfigError):
        parse_config(raw)


def test_source_label_prefixes_errors() -> None:
    with pytest.raises(ConfigError, match=r"^my-file\.yaml: "):
        parse_config(config(monitor(training={"window": 0})), source="my-file.yaml")


def test_config_error_is_a_tablewatch_error() -> None:
    assert issubclass(ConfigError, TablewatchError)


# -- load_config ---------------------------------------------------------------------
def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_load_config_invalid_yaml_mentions_the_line(tmp_path: Path) -> None:
    file = write(
        tmp_path / "monitors.yaml",
        """\
        results: sqlite:///r.db
        monitors:
          - name: payments
            table: payments: broken
            key: id
        """,
    )
    with pytest.raises(ConfigError, match="line 4") as info:
        load_config(file)
    assert "monitors.yaml" in str(info.value)


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "no-such-file.yaml")


def test_load_config_empty_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path / "empty.yaml", ""))


def test_load_config_validation_error_names_the_file(tmp_path: Path) -> None:
    file = write(
        tmp_path / "monitors.yaml",
        """\
        monitors:
          - name: payments
            source: sqlite:///s.db
            table: payments
            partition_column: created_at
            key: id
            training: {window: 0}
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_config(file)
    message = str(info.value)
    assert str(file) in message and "payments" in message and "training.window" in message


def test_relative_sqlite_urls_resolve_from_the_config_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TW_TEST_PW", "p")
    base = tmp_path / "conf" / "dir"
    file = write(
        base / "monitors.yaml",
        """\
        results: sqlite:///results.db
        models: models
        monitors:
          - name: relative
            source: sqlite:///data/source.db
            table: t
            partition_column: d
            key: id
          - name: absolute
            source: sqlite:////abs/source.db
            results: "sqlite:///:memory:"
            models: /abs/models
            table: t
            partition_column: d
            key: id
          - name: server
            source: postgresql+psycopg://u:${TW_TEST_PW}@db:5432/src
            results: postgresql+psycopg://u:${TW_TEST_PW}@db:5432/res
            table: t
            partition_column: d
            key: id
        """,
    )
    cfg = load_config(file)
    root = base.resolve()
    assert cfg.results == f"sqlite:///{root / 'results.db'}"
    assert cfg.models == str(root / "models")
    relative, absolute, server = cfg.monitors
    assert relative.source == f"sqlite:///{root / 'data' / 'source.db'}"
    assert relative.results == f"sqlite:///{root / 'results.db'}"
    assert relative.models == str(root / "models")
    assert absolute.source == "sqlite:////abs/source.db"
    assert absolute.results == "sqlite:///:memory:"
    assert absolute.models == "/abs/models"
    assert server.source == "postgresql+psycopg://u:p@db:5432/src"
    assert server.results == "postgresql+psycopg://u:p@db:5432/res"
    assert server.models == str(root / "models")


def test_relative_paths_do_not_depend_on_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    file = write(
        tmp_path / "cfg" / "monitors.yaml",
        """\
        results: sqlite:///tw.db
        monitors:
          - {name: m, source: "sqlite:///s.db", table: t, partition_column: d, key: id}
        """,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(Path("..") / "cfg" / "monitors.yaml")
    assert cfg.results == f"sqlite:///{(tmp_path / 'cfg').resolve() / 'tw.db'}"
    assert cfg == load_config(file.resolve())


def test_load_config_interpolates_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TW_TEST_PW", "hunter2")
    file = write(
        tmp_path / "monitors.yaml",
        """\
        results: postgresql+psycopg://tw:${TW_TEST_PW}@db/mon
        monitors:
          - {name: m, source: "sqlite:///s.db", table: t, partition_column: d, key: id}
        """,
    )
    assert load_config(file).results == "postgresql+psycopg://tw:hunter2@db/mon"


def test_example_template_is_valid() -> None:
    template = Path(__file__).resolve().parents[1] / "tasks" / "templates" / "monitors.example.yaml"
    cfg = load_config(template)
    assert [m.name for m in cfg.monitors] == ["payments"]


# -- parse_date ----------------------------------------------------------------------
def test_parse_date_valid() -> None:
    assert parse_date("2026-01-31") == date(2026, 1, 31)
    d = date(2025, 2, 3)
    assert parse_date(d) is d


@pytest.mark.parametrize("bad", ["2026-13-01", "2026-02-30", "yesterday", ""])
def test_parse_date_rejects_invalid(bad: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_date(bad, what="--date")
    assert repr(bad) in str(info.value)
    assert "--date" in str(info.value)


# -- threshold and severity ------------------------------------------------------------
def test_threshold_defaults_and_detector_params() -> None:
    t = parse_config(config(monitor())).monitors[0].threshold
    assert (t.method, t.contamination, t.z) == ("quantile", 0.01, 3.5)
    assert t.severity.multiples() == {"low": 1.0, "medium": 1.5, "high": 3.0}
    custom = parse_config(
        config(monitor(threshold={"method": "robust_z", "z": 4, "severity": {"medium": 2, "high": 5}}))
    ).monitors[0]
    assert custom.threshold.detector_params() == {
        "contamination": 0.01,
        "threshold_method": "robust_z",
        "threshold_z": 4.0,
        "severity_multiples": {"low": 1.0, "medium": 2.0, "high": 5.0},
    }


@pytest.mark.parametrize(
    ("threshold", "field", "shown"),
    [
        ({"method": "top_k"}, "threshold.method", "got 'top_k'"),
        ({"z": 0}, "threshold.z", "got 0"),
        ({"severity": {"medium": 0.5}}, "threshold.severity.medium", "got 0.5"),
        ({"severity": {"low": 2}}, "threshold.severity.low", "got 2"),
        ({"severity": {"medium": 4, "high": 3}}, "threshold.severity", "high (3.0) must be at least medium (4.0)"),
    ],
)
def test_bad_threshold_settings_name_monitor_and_field(threshold: dict, field: str, shown: str) -> None:
    message = config_error(config(monitor("payments", threshold=threshold)))
    assert "monitor 'payments'" in message and f"field {field!r}" in message and shown in message


@pytest.mark.parametrize("param", ["threshold_method", "threshold_z", "severity_multiples"])
def test_threshold_settings_belong_under_threshold(param: str) -> None:
    message = config_error(config(monitor("payments", detector={"name": "mad", "params": {param: 1}})))
    assert "payments" in message and param in message and "under 'threshold'" in message


# -- normalisation ------------------------------------------------------------------------
def test_normalise_defaults_and_pca_forms() -> None:
    n = parse_config(config(monitor())).monitors[0].normalise
    assert (n.max_null_rate, n.max_onehot, n.pca) == (0.5, 20, None)
    for given, setting in [(8, 8), (0.95, 0.95), ({"components": 3}, 3), ({"variance": 0.9}, 0.9)]:
        spec = parse_config(config(monitor(normalise={"pca": given}))).monitors[0]
        assert spec.normalise.pca.setting == setting
        assert isinstance(spec.normalise.pca.setting, type(setting))


@pytest.mark.parametrize(
    ("normalise", "field", "shown"),
    [
        ({"max_null_rate": 0}, "normalise.max_null_rate", "got 0"),
        ({"max_null_rate": 1.5}, "normalise.max_null_rate", "got 1.5"),
        ({"max_onehot": 0}, "normalise.max_onehot", "got 0"),
        ({"pca": 0}, "normalise.pca.components", "got 0"),
        ({"pca": 1.5}, "normalise.pca.variance", "got 1.5"),
        ({"pca": True}, "normalise.pca", "got True"),
        ({"pca": {"components": 3, "variance": 0.9}}, "normalise.pca", "exactly one"),
        ({"max_nulls": 0.2}, "normalise.max_nulls", "got 0.2"),
    ],
)
def test_bad_normalise_settings_name_monitor_and_field(normalise: dict, field: str, shown: str) -> None:
    message = config_error(config(monitor("payments", normalise=normalise)))
    assert "monitor 'payments'" in message and f"field {field!r}" in message and shown in message


@pytest.mark.parametrize(
    ("volume", "field", "shown"),
    [
        ({"factor": 1}, "volume.factor", "got 1"),
        ({"min_history": 8}, "volume.min_history", "got 8"),
        ({"severity": "quarantine"}, "volume.severity", "'warning' or 'critical'"),
        ({"factr": 5}, "volume.factr", "unknown"),
    ],
)
def test_bad_volume_settings_name_monitor_and_field(volume: dict, field: str, shown: str) -> None:
    message = config_error(config(monitor("payments", volume=volume)))
    assert "monitor 'payments'" in message and f"field {field!r}" in message and shown in message


@pytest.mark.parametrize(
    ("where", "url", "field", "shown"),
    [
        ("top", "mysql+pymysql://tw@db/shop", "results", "keeps its results in PostgreSQL or SQLite, not 'mysql'"),
        ("monitor", "mysql+pymysql://tw@db/shop", "results", "not 'mysql'"),
        ("monitor", "not a url", "source", "not a database URL"),
        ("monitor", "oracle+nosuch://tw@db/shop", "source", "unknown kind of database 'oracle+nosuch'"),
        ("monitor", "mssql+pymssql://tw@db/shop", "source", "driver for 'mssql+pymssql' is not installed"),
    ],
)
def test_database_urls_are_checked_when_the_config_is_read(where: str, url: str, field: str, shown: str) -> None:
    raw = config(monitor("payments", **{field: url})) if where == "monitor" else config(results=url)
    message = config_error(raw)
    assert f"field {field!r}" in message and shown in message
    if where == "monitor":
        assert "monitor 'payments'" in message


def test_a_bad_database_url_from_the_environment_is_shown_as_written(monkeypatch) -> None:
    monkeypatch.setenv("TW_SOURCE_PASSWORD", "s3cret-pw")
    message = config_error(config(monitor("payments", source="oracle+nosuch://tw:${TW_SOURCE_PASSWORD}@db/shop")))
    assert "unknown kind of database" in message and "${TW_SOURCE_PASSWORD}" in message
    assert "s3cret-pw" not in message


# -- supervised detectors --------------------------------------------------------------------
def test_supervised_detector_without_label_is_a_config_error() -> None:
    message = config_error(config(monitor("payments", detector={"name": "classifier", "params": {"epochs": 3}})))
    assert "monitor 'payments'" in message and "supervised" in message and "'label'" in message
    ok = parse_config(config(monitor("payments", label="is_fraud", detector={"name": "classifier"}))).monitors[0]
    assert ok.detector.supervised and ok.label == "is_fraud"
    assert not parse_config(config(monitor(detector={"name": "mad"}))).monitors[0].detector.supervised


# -- schedule, alerts, execution -----------------------------------------------------
def test_schedule_defaults_to_the_global_one_and_a_monitor_may_override_it() -> None:
    cfg = parse_config(
        config(
            monitor("payments"),
            monitor("orders", schedule={"cron": "30 7 * * 1-5", "timezone": "Europe/Berlin"}),
            schedule={"cron": "15 5 * * *", "timezone": "America/New_York"},
        )
    )
    payments, orders = cfg.monitors
    assert (payments.schedule.cron, payments.schedule.timezone) == ("15 5 * * *", "America/New_York")
    assert (orders.schedule.cron, orders.schedule.timezone) == ("30 7 * * 1-5", "Europe/Berlin")
    default = parse_config(config()).monitors[0].schedule
    assert (default.cron, default.timezone) == ("0 6 * * *", "UTC")


@pytest.mark.parametrize(
    ("schedule", "message"),
    [
        ({"cron": "0 25 * * *"}, "monitor 'payments', field 'schedule.cron': Invalid cron string"),
        ({"cron": "0 6 * *"}, "monitor 'payments', field 'schedule.cron': give five cron fields"),
        ({"timezone": "Europe/Atlantis"}, "monitor 'payments', field 'schedule.timezone': unknown time zone"),
        ({"cron": "0 6 * * *", "tz": "UTC"}, "monitor 'payments', field 'schedule.tz': Extra inputs"),
    ],
)
def test_bad_schedules_are_named(schedule: dict, message: str) -> None:
    assert message in config_error(config(monitor(schedule=schedule)))


def test_monitor_alerts_override_the_global_ones_field_by_field() -> None:
    cfg = parse_config(
        config(
            monitor("payments", alerts={"severity": "high", "quarantine": False}),
            monitor("orders"),
            alerts={"urls": ["json://hooks.internal/tw"], "anomaly_rate": 0.05},
        )
    )
    payments, orders = cfg.monitors
    assert payments.alerts.urls == ["json://hooks.internal/tw"] and payments.alerts.anomaly_rate == 0.05
    assert (payments.alerts.severity, payments.alerts.quarantine) == ("high", False)
    assert (orders.alerts.severity, orders.alerts.quarantine) == (None, True)


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"alerts": {"urls": ["hooks.internal/tw"]}}, "field 'alerts.urls': urls[0] is not an apprise URL"),
        ({"alerts": {"severity": "critical"}}, "field 'alerts.severity'"),
        ({"execution": {"task_runner": "ray"}}, "field 'execution.task_runner'"),
        ({"execution": {"dask_address": "tcp://s:8786"}}, "dask_address is set but task_runner is not 'dask'"),
        ({"execution": {"timeouts": {"scan": 0}}}, "field 'execution.timeouts.scan'"),
    ],
)
def test_bad_alerts_and_execution_are_named(top: dict, message: str) -> None:
    assert message in config_error(config(**top))


def test_timeouts_and_lock_wait_come_from_execution_unless_a_monitor_sets_them() -> None:
    cfg = parse_config(
        config(
            monitor("payments", lock_wait=30, timeouts={"scan": 60}),
            monitor("orders"),
            execution={"timeouts": {"train": 600}, "lock_wait": 5},
        )
    )
    payments, orders = cfg.monitors
    assert (payments.lock_wait, payments.timeouts.scan, payments.timeouts.train) == (30, 60, 14400)
    assert (orders.lock_wait, orders.timeouts.train) == (5, 600)
