"""monitors.yaml: the typed, validated description of what to watch.

Loading interpolates ``${ENV_VAR}`` (and ``${ENV_VAR:-default}``) in every string, then
validates with pydantic; any error is re-raised as one ``ConfigError`` line that names
the monitor, the field and the bad value.
"""

from __future__ import annotations

import os
import re
from datetime import date
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import unquote

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)
from sqlalchemy.engine import make_url

from tasks.db import redact
from tasks.errors import ConfigError

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MONITOR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")

Severity = Literal["critical", "warning"]


def _plain_name(value: str) -> str:
    """Table and column names: anything but empty or control characters.

    Quotes, semicolons, spaces and SQL keywords are allowed: real tables have such names,
    and they never reach SQL as text (SQLAlchemy quotes every identifier; see tasks.extract).
    """
    if not value.strip() or any(ord(c) < 32 for c in value):
        raise ValueError("must be a non-empty name without control characters")
    return value


Name = Annotated[str, AfterValidator(_plain_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- expectations -------------------------------------------------------------------
class _Expectation(_Strict):
    severity: Severity = Field(
        default="critical",
        description="critical failures quarantine the partition; warnings are only recorded",
    )


class NotNull(_Expectation):
    expect: Literal["not_null"]
    column: Name
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)


class Between(_Expectation):
    expect: Literal["between"]
    column: Name
    min: float | None = None
    max: float | None = None
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _bounds(self) -> Between:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


class InSet(_Expectation):
    expect: Literal["in_set"]
    column: Name
    values: list[Any] = Field(min_length=1)
    mostly: float = Field(default=1.0, ge=0.0, le=1.0)


class Unique(_Expectation):
    expect: Literal["unique"]
    column: Name


class RowCountBetween(_Expectation):
    expect: Literal["row_count_between"]
    min: int | None = Field(default=None, ge=0)
    max: int | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _bounds(self) -> RowCountBetween:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is greater than max {self.max}")
        return self


ExpectationSpec = Annotated[NotNull | Between | InSet | Unique | RowCountBetween, Field(discriminator="expect")]


# -- monitor parts ------------------------------------------------------------------
class DetectorSpec(_Strict):
    name: str = "ensemble"
    params: dict[str, Any] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _known(cls, value: str) -> str:
        import detectors

        if value not in detectors.available():
            raise ValueError(f"unknown detector {value!r}; available: {', '.join(detectors.available())}")
        return value

    @model_validator(mode="after")
    def _params_accepted(self) -> DetectorSpec:
        import detectors

        reserved = set(THRESHOLD_PARAMS) & set(self.params)
        if reserved:
            names = ", ".join(sorted(reserved))
            raise ValueError(f"set {names} under 'threshold' (as {_threshold_keys(reserved)}), not in detector params")
        try:
            detectors.create(self.name, **self.params)  # raises ValueError naming the bad parameter
        except ImportError as exc:  # registered but its module is not in this build
            raise ValueError(f"detector {self.name!r} is not available in this installation ({exc})") from None
        return self

    @property
    def supervised(self) -> bool:
        """True for families that learn from labels (they need the monitor's ``label`` column)."""
        import detectors

        try:
            return bool(detectors.detector_class(self.name).supervised)
        except ImportError:
            return self.name in detectors.SUPERVISED


THRESHOLD_PARAMS = {
    "contamination": "contamination",
    "threshold_method": "method",
    "threshold_z": "z",
    "severity_multiples": "severity",
}
"""Detector parameters that come from the monitor's ``threshold`` section, and their names there."""


def _threshold_keys(params: set[str]) -> str:
    return ", ".join(f"threshold.{THRESHOLD_PARAMS[p]}" for p in sorted(params))


class TrainingSpec(_Strict):
    window: int = Field(default=14, ge=1, description="valid past partitions used for training")
    retrain_every: int = Field(default=7, ge=1, description="partitions (days) a model is used for")
    max_rows: int = Field(
        default=250_000,
        ge=100,
        description="rows sampled uniformly from the window to train on; bounds training memory and time",
    )
    min_partitions: int | None = Field(
        default=None, ge=1, description="fewest valid past partitions to train on (default: min(7, window))"
    )

    @property
    def required_partitions(self) -> int:
        return self.min_partitions if self.min_partitions is not None else min(7, self.window)

    @model_validator(mode="after")
    def _fits_window(self) -> TrainingSpec:
        if self.min_partitions is not None and self.min_partitions > self.window:
            raise ValueError(f"min_partitions {self.min_partitions} is larger than window {self.window}")
        return self


class SeveritySpec(_Strict):
    """Severity levels as multiples of the threshold; ``low`` is always 1 (anything flagged)."""

    medium: float = Field(default=1.5, ge=1.0)
    high: float = Field(default=3.0, ge=1.0)

    @model_validator(mode="after")
    def _ordered(self) -> SeveritySpec:
        if self.high < self.medium:
            raise ValueError(f"high ({self.high}) must be at least medium ({self.medium})")
        return self

    def multiples(self) -> dict[str, float]:
        return {"low": 1.0, "medium": float(self.medium), "high": float(self.high)}


class ThresholdSpec(_Strict):
    """How the detector's threshold is calibrated on the training scores, and the severity levels above it."""

    method: Literal["quantile", "robust_z"] = Field(
        default="quantile",
        description="quantile: the (1 - contamination) quantile; robust_z: median + z * MAD-sigma of the scores",
    )
    contamination: float = Field(default=0.01, gt=0.0, lt=0.5)
    z: float = Field(default=3.5, gt=0.0, description="used by method robust_z")
    severity: SeveritySpec = Field(default_factory=SeveritySpec)

    def detector_params(self) -> dict[str, Any]:
        """The detector constructor arguments these settings map to."""
        return {
            "contamination": self.contamination,
            "threshold_method": self.method,
            "threshold_z": self.z,
            "severity_multiples": self.severity.multiples(),
        }


class VolumeSpec(_Strict):
    """When a partition's row count is out of line with the monitor's recent partitions
    (``tablewatch_row_count_vs_history``): a doubled load or a lost filter upstream."""

    factor: float = Field(
        default=10, gt=1, description="this many times more, or fewer, rows than the median of recent partitions"
    )
    min_history: int = Field(
        default=3, ge=1, le=7, description="recent partitions (last 7 days, not quarantined) needed before checking"
    )
    severity: Literal["warning", "critical"] = Field(
        default="warning", description="warning: scored and recorded; critical: quarantined"
    )


class PCASpec(_Strict):
    """Project the encoded features onto their leading principal components (wide tables)."""

    components: int | None = Field(default=None, ge=1, description="keep this many components")
    variance: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="keep the fewest components explaining this share of variance"
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # `pca: 8` means 8 components, `pca: 0.95` means 95% of the variance.
        if isinstance(value, bool):
            raise ValueError("give {components: K}, {variance: 0.95}, a whole number or a fraction, or null")
        if isinstance(value, int):
            return {"components": value}
        if isinstance(value, float):
            return {"variance": value}
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> PCASpec:
        if (self.components is None) == (self.variance is None):
            raise ValueError("give exactly one of components or variance")
        return self

    @property
    def setting(self) -> int | float:
        """The Normaliser's ``pca`` argument: an int is a component count, a float a variance share."""
        return self.components if self.components is not None else float(self.variance)  # type: ignore[arg-type]


class NormaliseSpec(_Strict):
    """How features are encoded; fitted on the training window and saved with the model."""

    max_null_rate: float = Field(
        default=0.5, gt=0.0, le=1.0, description="drop a feature whose training null rate exceeds this (1 = never)"
    )
    max_onehot: int = Field(
        default=20, ge=1, description="one-hot up to this many distinct values, frequency encoding above"
    )
    pca: PCASpec | None = Field(default=None, description="off by default")


class ScheduleSpec(_Strict):
    """When ``tablewatch serve`` (and ``infra/prefect.yaml``) start a monitor's daily run.

    The run monitors the day before the one it starts on, in ``timezone``.
    """

    cron: str = Field(default="0 6 * * *", description="five-field cron expression")
    timezone: str = Field(default="UTC", description="IANA time zone the cron expression is read in")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        from prefect._internal.schemas.validators import validate_cron_string  # the server's own check

        if len(value.split()) != 5:
            raise ValueError(f"give five cron fields (minute hour day month weekday), got {len(value.split())}")
        return validate_cron_string(value)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; use an IANA name such as Europe/Berlin or UTC") from None
        return value


AlertSeverity = Literal["low", "medium", "high"]


class AlertSpec(_Strict):
    """When a monitor-partition notifies, and where (apprise URLs: Slack, webhooks, e-mail, ...).

    A monitor's ``alerts`` overrides the global one field by field.
    """

    urls: list[str] = Field(
        default_factory=list, description="apprise URLs; keep tokens in ${ENV_VARS}, e.g. slack://${SLACK_TOKEN}"
    )
    anomaly_rate: float | None = Field(
        default=None, gt=0.0, le=1.0, description="alert when the partition's anomaly rate reaches this"
    )
    severity: AlertSeverity | None = Field(
        default=None, description="alert when any anomaly has at least this severity"
    )
    quarantine: bool = Field(default=True, description="alert when a partition is quarantined")
    failure: bool = Field(default=True, description="alert when a run fails")

    @field_serializer("urls", when_used="json")
    def _hide_tokens(self, urls: list[str]) -> list[str]:
        """JSON dumps (Prefect's flow-run parameters) show the URLs redacted to scheme and host."""
        from tasks.alerts import redact_url

        return [redact_url(u) for u in urls]

    @field_validator("urls")
    @classmethod
    def _urls(cls, value: list[str]) -> list[str]:
        for i, url in enumerate(value):
            if "://" not in url:
                raise ValueError(f"urls[{i}] is not an apprise URL (scheme://...)")
        return value

    def merged(self, override: AlertSpec | None) -> AlertSpec:
        if override is None:
            return self
        return self.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class TimeoutSpec(_Strict):
    """Seconds a stage may take before it is failed (a hung query, a stuck model)."""

    inspect: float = Field(default=300, gt=0)
    train: float = Field(default=4 * 3600, gt=0)
    scan: float = Field(default=4 * 3600, gt=0)
    write: float = Field(default=3600, gt=0)


class ExecutionSpec(_Strict):
    """How ``daily_monitoring`` and ``backfill`` run partitions side by side."""

    task_runner: Literal["threads", "dask"] = Field(
        default="threads", description="threads in this process, or a Dask cluster (prefect-dask)"
    )
    max_workers: int = Field(
        default=4, ge=1, le=256, description="threads; for dask without an address, local worker processes"
    )
    dask_address: str | None = Field(
        default=None, description="scheduler of an existing Dask cluster, e.g. tcp://dask-scheduler:8786"
    )
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    lock_wait: float = Field(
        default=0, ge=0, description="seconds to wait for another run of the same monitor-partition to finish"
    )

    @model_validator(mode="after")
    def _address_needs_dask(self) -> ExecutionSpec:
        if self.dask_address and self.task_runner != "dask":
            raise ValueError("dask_address is set but task_runner is not 'dask'")
        return self


RESULTS_BACKENDS = ("postgresql", "sqlite")
"""Where tablewatch keeps its results: its migrations, bulk writes, leases and views exist for these."""


def _database_url(url: str | None, *, results: bool) -> str | None:
    """Check a database URL when the config is read, not when a run first connects.

    It must parse, name a SQLAlchemy dialect whose driver is installed, and, for results,
    a backend tablewatch can store into. Raised as ``ValueError`` so the message names the
    monitor and field; it quotes the kind of database, never the URL.
    """
    if url is None:
        return None
    try:
        parsed = make_url(url)
    except Exception:
        raise ValueError(
            "not a database URL: write dialect+driver://user@host:port/database "
            "(postgresql+psycopg://tw@db:5432/shop) or sqlite:///path/to/file.db"
        ) from None
    try:
        dialect = parsed.get_dialect()
    except Exception:  # sqlalchemy.exc.NoSuchModuleError: no such dialect or driver name
        raise ValueError(f"unknown kind of database {parsed.drivername!r} (SQLAlchemy has no such dialect)") from None
    if results and parsed.get_backend_name() not in RESULTS_BACKENDS:
        raise ValueError(
            f"tablewatch keeps its results in PostgreSQL or SQLite, not {parsed.get_backend_name()!r} "
            "(that database can be a monitor's source)"
        )
    try:
        dialect.import_dbapi()
    except ImportError as exc:
        raise ValueError(
            f"the Python driver for {parsed.drivername!r} is not installed (no module {exc.name!r}): "
            "install it with pip, or name an installed driver in the URL (dialect+driver://)"
        ) from None
    return url


def _shown_url(url: str | None) -> str | None:
    """A database URL as JSON dumps show it: password masked.

    Prefect stores a flow's parameters as JSON (``monitor_table`` takes a ``MonitorSpec``), and
    its UI and API show them; the password, interpolated from the environment, must not go
    there. Python-mode dumps and the objects themselves keep the real URL.
    """
    return None if url is None else redact(url)


class MonitorSpec(_Strict):
    """One table to watch. ``results`` and ``models`` default to the file's global values.

    Its JSON form (``model_dump(mode="json")``, Prefect's flow-run parameters) masks the
    passwords of ``source`` and ``results``.
    """

    name: str
    source: str
    table: Name
    partition_column: Name
    key: Name
    features: list[Name] | None = None
    label: Name | None = None
    detector: DetectorSpec = Field(default_factory=DetectorSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    threshold: ThresholdSpec = Field(default_factory=ThresholdSpec)
    normalise: NormaliseSpec = Field(default_factory=NormaliseSpec)
    expectations: list[ExpectationSpec] = Field(default_factory=list)
    volume: VolumeSpec = Field(default_factory=VolumeSpec)
    store_scores: bool = Field(
        default=False, description="also write every row's score to tw_scores (one row per source row)"
    )
    schedule: ScheduleSpec | None = Field(default=None, description="default: the file's global schedule")
    alerts: AlertSpec | None = Field(default=None, description="overrides the global alerts field by field")
    results: str | None = None
    models: str | None = None
    auto_upgrade: bool | None = Field(default=None, description="set globally; see Config.auto_upgrade")
    timeouts: TimeoutSpec | None = Field(default=None, description="default: execution.timeouts")
    lock_wait: float | None = Field(default=None, ge=0, description="default: execution.lock_wait")

    @field_serializer("source", "results", when_used="json")
    def _hide_password(self, url: str | None) -> str | None:
        return _shown_url(url)

    @field_validator("source")
    @classmethod
    def _source_url(cls, value: str) -> str:
        return _database_url(value, results=False)

    @field_validator("results")
    @classmethod
    def _results_url(cls, value: str | None) -> str | None:
        return _database_url(value, results=True)

    @field_validator("name")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _MONITOR_NAME.match(value):
            raise ValueError("use letters, digits, '-' and '_' only, starting with a letter or digit (at most 63)")
        return value

    @field_validator("features")
    @classmethod
    def _feature_list(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            if not value:
                raise ValueError("give at least one feature, or leave it out to use every numeric column")
            dupes = sorted({f for f in value if value.count(f) > 1})
            if dupes:
                raise ValueError(f"listed twice: {', '.join(dupes)}")
        return value

    @model_validator(mode="after")
    def _roles_distinct(self) -> MonitorSpec:
        roles = {"key": self.key, "partition_column": self.partition_column, "label": self.label}
        for role, column in roles.items():
            if column is not None and self.features and column in self.features:
                raise ValueError(f"{role} column {column!r} cannot also be a feature")
        if self.label is None and self.detector.supervised:
            raise ValueError(
                f"detector {self.detector.name!r} is supervised and learns from labels: "
                "set 'label' to a column with 1 = anomaly, 0 = normal"
            )
        return self

    @property
    def results_url(self) -> str:
        assert self.results is not None, "MonitorSpec.results is filled in by Config"
        return self.results

    @property
    def models_dir(self) -> Path:
        assert self.models is not None, "MonitorSpec.models is filled in by Config"
        return Path(self.models)


class Config(_Strict):
    results: str = "sqlite:///tablewatch.db"
    models: str = Field(default="tablewatch-models", description="directory for model artifacts")
    auto_upgrade: bool = Field(
        default=True,
        description="flows migrate a results database that is behind; false: they refuse and name the command",
    )
    schedule: ScheduleSpec = Field(default_factory=ScheduleSpec)
    alerts: AlertSpec = Field(default_factory=AlertSpec)
    execution: ExecutionSpec = Field(default_factory=ExecutionSpec)
    monitors: list[MonitorSpec] = Field(min_length=1)

    @field_serializer("results", when_used="json")
    def _hide_password(self, url: str) -> str | None:
        return _shown_url(url)

    @field_validator("results")
    @classmethod
    def _results_url(cls, value: str) -> str:
        return _database_url(value, results=True)

    @model_validator(mode="after")
    def _unique_and_defaults(self) -> Config:
        names = [m.name for m in self.monitors]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"monitor names must be unique; repeated: {', '.join(dupes)}")
        filled = [
            m.model_copy(
                update={
                    "results": m.results or self.results,
                    "models": m.models or self.models,
                    "auto_upgrade": self.auto_upgrade if m.auto_upgrade is None else m.auto_upgrade,
                    "schedule": m.schedule or self.schedule,
                    "alerts": self.alerts.merged(m.alerts),
                    "timeouts": m.timeouts or self.execution.timeouts,
                    "lock_wait": self.execution.lock_wait if m.lock_wait is None else m.lock_wait,
                }
            )
            for m in self.monitors
        ]
        object.__setattr__(self, "monitors", filled)
        return self

    def monitor(self, name: str) -> MonitorSpec:
        for m in self.monitors:
            if m.name == name:
                return m
        raise ConfigError(f"no monitor named {name!r}; configured: {', '.join(m.name for m in self.monitors)}")


# -- loading ------------------------------------------------------------------------
def interpolate_env(value: Any, where: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string of a parsed YAML tree."""
    if isinstance(value, dict):
        return {k: interpolate_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate_env(v, _item_label(where, i, v)) for i, v in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            var, default = match.group(1), match.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            raise ConfigError(f"{where or 'config'}: environment variable {var} is not set")

        return _ENV_PATTERN.sub(substitute, value)
    return value


def _item_label(where: str, index: int, item: Any) -> str:
    if where == "monitors" and isinstance(item, dict) and isinstance(item.get("name"), str):
        return f"monitor {item['name']!r}"
    return f"{where}[{index}]"


def _describe_location(loc: tuple[Any, ...], raw: dict[str, Any]) -> str:
    parts: list[str] = []
    if len(loc) >= 2 and loc[0] == "monitors" and isinstance(loc[1], int):
        monitors = raw.get("monitors") or []
        name = monitors[loc[1]].get("name") if loc[1] < len(monitors) and isinstance(monitors[loc[1]], dict) else None
        parts.append(f"monitor {name!r}" if name else f"monitor #{loc[1] + 1}")
        loc = loc[2:]
    # Drop the discriminator tags pydantic adds for tagged unions (e.g. 'between').
    field = ".".join(str(p) for p in loc if not (isinstance(p, str) and p in _EXPECT_TAGS))
    if field:
        parts.append(f"field {field!r}")
    return ", ".join(parts) or "top level"


_EXPECT_TAGS = {"not_null", "between", "in_set", "unique", "row_count_between"}


def _written_value(tree: Any, loc: tuple[Any, ...]) -> Any:
    """The value at ``loc`` in the tree as written (before interpolation), or None when the path leaves it."""
    for part in loc:
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and isinstance(part, int) and 0 <= part < len(tree):
            tree = tree[part]
        else:
            return None
    return tree


def _keys_at(loc: tuple[Any, ...]) -> list[str] | None:
    """The keys the mapping at error location ``loc`` (under ``Config``) accepts; None when that is unclear."""
    kinds: list[Any] = [Config]
    for part in loc:
        kinds = [k for kind in kinds for k in _step(kind, part)]
    models = {k for k in kinds if isinstance(k, type) and issubclass(k, BaseModel)}
    return list(models.pop().model_fields) if len(models) == 1 else None


def _flatten(kind: Any) -> list[Any]:
    """The alternatives of a type: ``X | None`` and ``Annotated[A | B, ...]`` opened up."""
    origin = get_origin(kind)
    if origin is Annotated:
        return _flatten(get_args(kind)[0])
    if origin in (Union, UnionType):
        return [k for arg in get_args(kind) for k in _flatten(arg)]
    return [kind]


def _step(kind: Any, part: Any) -> list[Any]:
    """The types found at ``part`` (a key, a list index or an expectation tag) inside ``kind``."""
    found: list[Any] = []
    for tp in _flatten(kind):
        if isinstance(part, int):
            if get_origin(tp) is list:
                found += _flatten(get_args(tp)[0])
        elif isinstance(tp, type) and issubclass(tp, BaseModel):
            if part in tp.model_fields:
                found += _flatten(tp.model_fields[part].annotation)
            elif "expect" in tp.model_fields and part in get_args(tp.model_fields["expect"].annotation):
                found.append(tp)  # the tag pydantic puts in the location of a tagged union
    return found


def format_validation_error(
    exc: ValidationError, raw: dict[str, Any], source: str, written: dict[str, Any] | None = None
) -> str:
    """One line naming, for every error, the monitor, the field and the bad value.

    A value that came from the environment (``written`` holds ``${VAR}`` there) is shown as
    written, never as its value: the variable may hold a secret.
    """
    messages = []
    for err in exc.errors(include_url=False):
        loc = tuple(err["loc"])
        where = _describe_location(loc, raw)
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            keys = _keys_at(loc[:-1])
            msg = "Extra inputs are not permitted: unknown key"
            if keys:
                msg += f"; the keys here are {', '.join(keys)}"
        bad = err.get("input")
        as_written = _written_value(written, loc) if written is not None else None
        if isinstance(bad, (dict, list)) or err["type"] == "missing":
            shown = ""
        elif isinstance(as_written, str) and _ENV_PATTERN.search(as_written):
            shown = f" (got {as_written!r}, from the environment)"
        else:
            shown = f" (got {bad!r})"
        messages.append(f"{where}: {msg}{shown}")
    return f"{source}: " + "; ".join(messages)


# -- secrets ------------------------------------------------------------------------
_URL_PASSWORD_KEYS = {"password", "passwd"}
"""Query parameters that carry a password (libpq and most drivers accept ``?password=``)."""
_HELD = re.compile("\x00([0-9]+)\x00")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+._-]{0,40}$")


def _url_passwords(url: str) -> tuple[str | None, list[str]]:
    """The password of ``url``'s user part (decoded, as the driver gets it) and any ``password`` query values."""
    try:
        parsed = make_url(url)
    except Exception:  # not a URL SQLAlchemy reads (a whole URL from one variable, say): split it by hand
        userinfo = url.partition("://")[2].split("/", 1)[0].split("?", 1)[0].rpartition("@")[0]
        return (userinfo.partition(":")[2] if ":" in userinfo else None), []
    query = []
    for key, value in parsed.query.items():
        if key.lower() in _URL_PASSWORD_KEYS:
            query += [value] if isinstance(value, str) else list(value)
    return (None if parsed.password is None else str(parsed.password)), query


def _password_problem(url: str, fix: str) -> str | None:
    """What is wrong with the password of database URL ``url`` as written (before interpolation), or None.

    The password (in the user part or a ``password`` query parameter) must be exactly one
    ``${VAR}`` reference: a literal, or a ``${VAR:-default}`` with a default, puts it in
    the file. The variable's value must also come out of URL parsing intact, else parts of
    it would end up in the host name or port (and in error messages).
    """
    refs: list[re.Match[str]] = []

    def hold(match: re.Match[str]) -> str:
        refs.append(match)
        return f"\x00{len(refs) - 1}\x00"

    user_password, query_passwords = _url_passwords(_ENV_PATTERN.sub(hold, url))
    for password in (user_password, *query_passwords):
        if not password:
            continue
        held = _HELD.fullmatch(password)
        if held is None:
            return f"the database URL has a password written into the config; {fix}"
        if refs[int(held.group(1))].group(2):
            return f"the default of the password's ${{VAR:-default}} writes the password into the config; {fix}"
    held = _HELD.fullmatch(user_password or "")
    if held is not None:
        ref = refs[int(held.group(1))]
        try:
            expected, (got, _) = unquote(interpolate_env(ref.group(0))), _url_passwords(interpolate_env(url))
        except ConfigError:  # the variable is not set: interpolation says so, naming the place
            return None
        if got != expected:
            return (
                f"the password in ${{{ref.group(1)}}} breaks up the URL: percent-encode the characters "
                "@ / ? # % in it (e.g. urllib.parse.quote(password, safe=''))"
            )
    return None


def check_database_passwords(raw: dict[str, Any], source: str = "config") -> None:
    """Refuse database URLs whose password is written in the config rather than taken from the environment.

    Checks the global ``results`` and each monitor's ``source`` and ``results`` as written
    (before ``${VAR}`` interpolation). The message never quotes the password.
    """
    places: list[tuple[str, str, Any]] = [("", "results", raw.get("results"))]
    monitors = raw.get("monitors")
    if isinstance(monitors, list):
        for i, m in enumerate(monitors):
            if isinstance(m, dict):
                name = m.get("name")
                label = f"monitor {name!r}, " if isinstance(name, str) and name else f"monitor #{i + 1}, "
                places += [(label, key, m.get(key)) for key in ("source", "results")]
    for label, key, value in places:
        if not isinstance(value, str):
            continue
        scheme = value.partition("://")[0] if "://" in value else ""
        var = f"TW_{key.upper()}_PASSWORD"
        fix = (
            f"keep it in an environment variable: write {scheme if _SCHEME.match(scheme) else 'driver'}"
            f"://user:${{{var}}}@host:port/database and set {var} in the environment"
        )
        problem = _password_problem(value, fix)
        if problem:
            raise ConfigError(f"{source}: {label}field {key!r}: {problem}")


def parse_config(raw: Any, source: str = "config", base_dir: Path | None = None) -> Config:
    """Validate an already-parsed YAML tree; relative SQLite and model paths resolve from ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping with 'monitors', got {type(raw).__name__}")
    check_database_passwords(raw, source)  # before interpolation: what the file itself says
    written = raw
    try:
        raw = interpolate_env(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        config = Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, raw, source, written=written)) from None
    if base_dir is None:
        return config
    return _resolve_paths(config, base_dir)


def _resolve_paths(config: Config, base_dir: Path) -> Config:
    def url(u: str) -> str:
        try:
            parsed = make_url(u)
        except Exception:  # not a URL: leave it for the engine to reject with its own message
            return u
        db = parsed.database
        if parsed.get_backend_name() == "sqlite" and db and db != ":memory:" and not os.path.isabs(db):
            return parsed.set(database=str((base_dir / db).resolve())).render_as_string(hide_password=False)
        return u

    def path(p: str) -> str:
        return str((base_dir / p).resolve()) if not os.path.isabs(p) else p

    monitors = [
        m.model_copy(update={"source": url(m.source), "results": url(m.results_url), "models": path(m.models or "")})
        for m in config.monitors
    ]
    return config.model_copy(
        update={"results": url(config.results), "models": path(config.models), "monitors": monitors}
    )


def load_config(path: str | os.PathLike) -> Config:
    """Read and validate monitors.yaml; relative paths in it are relative to the file."""
    file = Path(path)
    try:
        text = file.read_text()
    except FileNotFoundError:
        raise ConfigError(f"config file {file} does not exist (create one with 'tablewatch init')") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{file}: invalid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    return parse_config(raw, source=str(file), base_dir=file.resolve().parent)


def parse_date(value: str | date, what: str = "date") -> date:
    """ISO date from the CLI or a flow parameter, with a clear error."""
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be an ISO date like 2026-01-31, got {value!r}") from None
