"""Benchmark the unsupervised detectors on the labelled ADBench data sets, beside PyOD's references.

Protocol (ADBench, PyOD): fit on all of ``X``, score all of ``X``, then ROC-AUC and average
precision (PR-AUC) of the scores against ``y`` (1 = anomaly). Our detectors see ``X`` after
:func:`robust_scale`, the numeric-column scaling the pipeline's normaliser applies, because
that is what they see in production; PyOD's detectors see raw ``X`` by default, which is
their own convention and how their published figures were made (``--pyod-input scaled``
gives them our input instead, to check that the input is not what separates them).

Usage (from the repository root)::

    python benchmarks/adbench.py                                # everything, seed 0
    python benchmarks/adbench.py --detectors mad,zscore,iqr --datasets 14_glass,'*thyroid*'
    python benchmarks/adbench.py --params '{"autoencoder": {"epochs": 20}}' --json bench.json

Tables go to stdout (markdown-compatible), progress and warnings to stderr. Importable:
:func:`evaluate` gives one detector's figures on one data set, :func:`run` the whole table.
"""

from __future__ import annotations

import argparse
import fnmatch
import importlib
import inspect
import json
import math
import os
import platform
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(REPO_ROOT))

import detectors  # noqa: E402
from tasks import evaluate as evaluate_metrics  # noqa: E402


def default_data_dir() -> Path:
    """``$TABLEWATCH_ADBENCH_DIR``, else ``shared/data/adbench`` beside the checkout, else the
    team machine's ``/work/shared`` (CI clones the repository elsewhere)."""
    candidates = [REPO_ROOT.parent / "shared" / "data" / "adbench", Path("/work/shared/data/adbench")]
    if os.environ.get("TABLEWATCH_ADBENCH_DIR"):
        return Path(os.environ["TABLEWATCH_ADBENCH_DIR"])
    return next((c for c in candidates if c.is_dir()), candidates[0])


DEFAULT_DATA_DIR = default_data_dir()
PYOD_PREFIX = "pyod:"
PYOD_REFERENCES: tuple[str, ...] = ("pyod:IForest", "pyod:ECOD", "pyod:KNN")
PYOD_INPUTS = ("raw", "scaled")
CLIP = 50.0
"""Scaled values are clipped to +-CLIP, as the pipeline's normaliser does."""
_IQR_TO_SIGMA = 1.349
_EPS = 1e-12

# PyOD modules whose name is not the lower-cased class name.
_PYOD_MODULES = {"AutoEncoder": "auto_encoder", "VAE": "vae", "SO_GAAL": "so_gaal", "MO_GAAL": "mo_gaal"}

ProgressFn = Callable[[str], None]


# -- input preparation --------------------------------------------------------------


def robust_scale(X: np.ndarray, clip: float = CLIP) -> np.ndarray:
    """Scale each column as the pipeline's normaliser does for numeric features.

    ``(x - median) / (IQR / 1.349)``; where the IQR is zero the standard deviation takes
    its place, and where that is zero too, 1. Missing values become the median (0 after
    scaling); results are clipped to ``+-clip``. The normaliser's missing-value indicator
    columns are left out: the benchmark data hold no missing values, so they would be
    constant zeros. Why scale at all: it is the input our detectors get in production.
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {X.shape}")
    out = np.empty_like(X)
    for j in range(X.shape[1]):
        column = X[:, j]
        finite = column[np.isfinite(column)]
        if finite.size == 0:
            out[:, j] = 0.0
            continue
        median = float(np.median(finite))
        q1, q3 = np.quantile(finite, [0.25, 0.75])
        scale = float(q3 - q1) / _IQR_TO_SIGMA
        if not scale > _EPS:
            scale = float(np.std(finite))
        if not scale > _EPS:
            scale = 1.0
        filled = np.where(np.isnan(column), median, column)
        with np.errstate(over="ignore", invalid="ignore"):
            out[:, j] = (filled - median) / scale
    return np.clip(np.nan_to_num(out, nan=0.0, posinf=clip, neginf=-clip), -clip, clip)


# -- metrics --------------------------------------------------------------------------


def _check_binary(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != scores.shape:
        raise ValueError(f"{len(y)} labels but {len(scores)} scores")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must be 0 (normal) or 1 (anomaly)")
    if len(np.unique(y)) < 2:
        raise ValueError("labels hold one class only; ROC-AUC and average precision are undefined")
    if not np.isfinite(scores).all():
        raise ValueError(f"{int((~np.isfinite(scores)).sum())} scores are NaN or infinite")
    return y.astype(np.int64), scores


def roc_auc_numpy(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC with ties counted one half: the pipeline's own implementation (``tasks.evaluate``)."""
    return float(evaluate_metrics.roc_auc(*_check_binary(y, scores)))


def average_precision_numpy(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision as scikit-learn defines it: the pipeline's own implementation (``tasks.evaluate``)."""
    return float(evaluate_metrics.average_precision(*_check_binary(y, scores)))


def _sklearn_metrics() -> Any | None:
    try:
        import sklearn.metrics
    except ImportError:
        return None
    return sklearn.metrics


def metric_backend() -> str:
    """Which implementation :func:`roc_auc` and :func:`average_precision` use."""
    return "sklearn" if _sklearn_metrics() is not None else "numpy"


def roc_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC-AUC: scikit-learn's where installed, else :func:`roc_auc_numpy` (same figure)."""
    metrics = _sklearn_metrics()
    if metrics is None:
        return roc_auc_numpy(y, scores)
    y, scores = _check_binary(y, scores)
    return float(metrics.roc_auc_score(y, scores))


def average_precision(y: np.ndarray, scores: np.ndarray) -> float:
    """Average precision (PR-AUC): scikit-learn's where installed, else :func:`average_precision_numpy`."""
    metrics = _sklearn_metrics()
    if metrics is None:
        return average_precision_numpy(y, scores)
    y, scores = _check_binary(y, scores)
    return float(metrics.average_precision_score(y, scores))


def rank_descending(values: dict[str, float | None]) -> dict[str, float]:
    """Rank 1 = highest value, ties averaged; missing values (failures) share the ranks after all the others."""
    present = sorted(((v, k) for k, v in values.items() if v is not None and not math.isnan(v)), key=lambda x: -x[0])
    ranks: dict[str, float] = {}
    i = 0
    while i < len(present):
        j = i
        while j + 1 < len(present) and present[j + 1][0] == present[i][0]:
            j += 1
        for _, key in present[i : j + 1]:
            ranks[key] = (i + 1 + j + 1) / 2.0
        i = j + 1
    missing = [k for k in values if k not in ranks]
    for key in missing:
        ranks[key] = (len(present) + 1 + len(values)) / 2.0
    return ranks


# -- detectors --------------------------------------------------------------------------


def pyod_version() -> str | None:
    """PyOD's version, or None when it is not importable (it is an optional extra)."""
    try:
        import pyod
    except ImportError:
        return None
    return str(getattr(pyod, "__version__", "unknown"))


def pyod_class(class_name: str) -> type:
    """The PyOD detector class ``pyod.models.<module>.<class_name>``."""
    module_name = _PYOD_MODULES.get(class_name, class_name.lower())
    try:
        module = importlib.import_module(f"pyod.models.{module_name}")
        return getattr(module, class_name)
    except (ImportError, AttributeError):
        raise ValueError(f"no PyOD detector class {class_name!r} in pyod.models.{module_name}") from None


def _accepts(cls: type, parameter: str) -> bool:
    try:
        signature = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return any(p.name == parameter or p.kind == p.VAR_KEYWORD for p in signature.parameters.values())


def _seed_everything(seed: int) -> None:
    """Seed the global generators too, for libraries that draw from them when given no random_state."""
    random.seed(seed)
    np.random.seed(seed)


def load_dataset(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``X`` (float64) and ``y`` (0/1) from an ADBench ``.npz``."""
    with np.load(path) as data:
        X = np.asarray(data["X"], dtype=np.float64)
        y = np.asarray(data["y"]).astype(np.int64).ravel()
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise ValueError(f"{path}: X has shape {X.shape} but y has {y.shape[0]} labels")
    return X, y


def evaluate(
    name: str,
    params: dict[str, Any],
    dataset_path: str | Path,
    *,
    seed: int = 0,
    pyod_input: str = "raw",
) -> dict[str, Any]:
    """Fit ``name`` on all of a data set, score all of it, and return its figures.

    ``name`` is a registry name (input: :func:`robust_scale` of X) or ``pyod:<Class>``
    (input: raw X unless ``pyod_input="scaled"``). ``seed`` becomes ``random_state``
    unless ``params`` sets one. ``seconds`` covers construction, fit and score; imports
    and input preparation are excluded so the first Keras detector does not pay for
    TensorFlow's import. Raises whatever the detector raises.
    """
    if pyod_input not in PYOD_INPUTS:
        raise ValueError(f"pyod_input must be one of {', '.join(PYOD_INPUTS)}, got {pyod_input!r}")
    path = Path(dataset_path)
    X_raw, y = load_dataset(path)
    params = dict(params)
    is_pyod = name.startswith(PYOD_PREFIX)
    if is_pyod:
        cls = pyod_class(name[len(PYOD_PREFIX) :])
        X = robust_scale(X_raw) if pyod_input == "scaled" else X_raw
    else:
        if name in detectors.SUPERVISED:
            raise ValueError(f"{name!r} needs labels; the benchmark is unsupervised")
        cls = detectors.detector_class(name)  # imports the family before the clock starts
        X = robust_scale(X_raw)
    if _accepts(cls, "random_state"):
        params.setdefault("random_state", seed)

    _seed_everything(seed)
    start = time.perf_counter()
    if is_pyod:
        model = cls(**params)
        model.fit(X)
        scores = model.decision_scores_  # its scores of the training rows, each row left out of its own neighbours
    else:
        model = detectors.create(name, **params)
        model.fit(X)
        scores = model.score(X)
    seconds = time.perf_counter() - start

    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != y.shape:
        raise ValueError(f"{name} returned {scores.shape[0]} scores for {y.shape[0]} rows")
    return {
        "detector": name,
        "dataset": path.stem,
        "roc_auc": roc_auc(y, scores),
        "pr_auc": average_precision(y, scores),
        "seconds": seconds,
        "n_rows": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "anomaly_rate": float(y.mean()),
    }


# -- selection ----------------------------------------------------------------------


def default_detectors() -> list[str]:
    """Every registered detector that learns without labels."""
    return [name for name in detectors.available() if name not in detectors.SUPERVISED]


def check_detector_names(names: Sequence[str]) -> None:
    """Raise ``ValueError`` on names that are neither unsupervised registry entries nor ``pyod:<Class>``."""
    registered = set(detectors.available())
    for name in names:
        if name.startswith(PYOD_PREFIX):
            if not name[len(PYOD_PREFIX) :]:
                raise ValueError(f"{name!r}: name a PyOD class, e.g. pyod:IForest")
        elif name in detectors.SUPERVISED:
            raise ValueError(f"{name!r} needs labels; the benchmark runs unsupervised detectors only")
        elif name not in registered:
            raise ValueError(f"unknown detector {name!r}; available: {', '.join(default_detectors())}")


def select_datasets(data_dir: str | Path, patterns: Sequence[str] | None = None) -> list[Path]:
    """The ``.npz`` files in ``data_dir`` matching ``patterns`` (all by default), in a stable order.

    A pattern is a glob (``*thyroid*``), a file name with or without ``.npz``
    (``14_glass``), a name without its numeric prefix (``glass``), or a path to a file.
    A pattern matching nothing raises ``ValueError``.
    """
    directory = Path(data_dir)
    available = sorted(directory.glob("*.npz"), key=_dataset_sort_key) if directory.is_dir() else []
    if not patterns:
        if not available:
            raise ValueError(f"no .npz data sets in {directory}")
        return available
    chosen: list[Path] = []
    for pattern in patterns:
        if Path(pattern).is_file():
            matches = [Path(pattern)]
        else:
            token = pattern.lower().removesuffix(".npz")
            matches = [
                p
                for p in available
                if fnmatch.fnmatch(p.stem.lower(), token)
                or p.stem.lower().partition("_")[2] == token
                or p.stem.lower() == token
            ]
        if not matches:
            raise ValueError(f"no data set in {directory} matches {pattern!r}")
        chosen.extend(m for m in matches if m not in chosen)
    return chosen


def _dataset_sort_key(path: Path) -> tuple[int, str]:
    prefix, _, rest = path.stem.partition("_")
    return (int(prefix), rest.lower()) if prefix.isdigit() else (sys.maxsize, path.stem.lower())


# -- the whole run ------------------------------------------------------------------


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    detector_names: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    *,
    data_dir: str | Path = DEFAULT_DATA_DIR,
    params: dict[str, dict[str, Any]] | None = None,
    seed: int = 0,
    references: Sequence[str] = PYOD_REFERENCES,
    pyod_input: str = "raw",
    progress: ProgressFn | None = _stderr,
) -> dict[str, Any]:
    """Run every detector on every data set; return ``{"meta", "results", "summary"}``.

    ``detector_names`` defaults to :func:`default_detectors`; ``references`` (PyOD
    ``pyod:<Class>`` names) are added when PyOD is importable and skipped with one line
    of notice when it is not. A detector that raises on a data set becomes an error cell
    (``error`` holds the message); the run goes on.
    """
    say = progress or (lambda _message: None)
    ours = list(detector_names) if detector_names is not None else default_detectors()
    params = dict(params or {})
    version = pyod_version()
    names = list(dict.fromkeys(ours))
    notes: list[str] = []
    wanted_pyod = [n for n in dict.fromkeys([*names, *references]) if n.startswith(PYOD_PREFIX)]
    if version is None and wanted_pyod:
        note = f"pyod is not importable (pip install -e '.[bench]'); running without {', '.join(wanted_pyod)}"
        say(note)
        notes.append(note)
        names = [n for n in names if not n.startswith(PYOD_PREFIX)]
    else:
        names = list(dict.fromkeys([*names, *references]))
    check_detector_names(names)
    unknown_params = sorted(set(params) - set(names) - set(wanted_pyod))
    if unknown_params:
        raise ValueError(f"--params names detectors not in this run: {', '.join(unknown_params)}")
    paths = select_datasets(data_dir, datasets)

    results: list[dict[str, Any]] = []
    total = len(paths) * len(names)
    for i, path in enumerate(paths):
        for j, name in enumerate(names):
            k = i * len(names) + j + 1
            try:
                cell = evaluate(name, params.get(name, {}), path, seed=seed, pyod_input=pyod_input)
                cell["error"] = None
                say(f"[{k}/{total}] {path.stem} {name}: ROC-AUC {cell['roc_auc']:.3f} ({cell['seconds']:.2f} s)")
            except Exception as exc:  # one detector failing must not end the run
                cell = {
                    "detector": name,
                    "dataset": path.stem,
                    "roc_auc": None,
                    "pr_auc": None,
                    "seconds": None,
                    "error": f"{type(exc).__name__}: {exc}".strip(),
                }
                say(f"[{k}/{total}] {path.stem} {name}: ERROR {cell['error']}")
            cell["input"] = "raw" if name.startswith(PYOD_PREFIX) and pyod_input == "raw" else "scaled"
            results.append(cell)

    return {
        "meta": {
            "seed": seed,
            "data_dir": str(Path(data_dir)),
            "datasets": [p.stem for p in paths],
            "detectors": names,
            "params": params,
            "pyod_input": pyod_input,
            "pyod_version": version,
            "metrics": metric_backend(),
            "numpy_version": np.__version__,
            "python_version": platform.python_version(),
            "notes": notes,
        },
        "results": results,
        "summary": summarise(results, names, [p.stem for p in paths]),
    }


def summarise(results: list[dict[str, Any]], names: Sequence[str], datasets: Sequence[str]) -> list[dict[str, Any]]:
    """Per detector: mean ROC-AUC and PR-AUC over the data sets it ran on, mean rank, seconds, failures.

    Ranks are by ROC-AUC within each data set over all detectors in the run (1 = best, ties
    averaged, failures last); sorted by mean ROC-AUC, detectors that never ran at the end.
    """
    cells = {(c["dataset"], c["detector"]): c for c in results}
    ranks: dict[str, list[float]] = {n: [] for n in names}
    for dataset in datasets:
        row = {n: cells[(dataset, n)]["roc_auc"] for n in names if (dataset, n) in cells}
        for name, rank in rank_descending(row).items():
            ranks[name].append(rank)
    summary = []
    for name in names:
        done = [cells[(d, name)] for d in datasets if (d, name) in cells and cells[(d, name)]["error"] is None]
        n_cells = sum((d, name) in cells for d in datasets)
        summary.append(
            {
                "detector": name,
                "mean_roc_auc": float(np.mean([c["roc_auc"] for c in done])) if done else None,
                "mean_pr_auc": float(np.mean([c["pr_auc"] for c in done])) if done else None,
                "mean_rank": float(np.mean(ranks[name])) if ranks[name] else None,
                "seconds": float(sum(c["seconds"] for c in done)),
                "datasets": len(done),
                "failures": n_cells - len(done),
            }
        )
    summary.sort(key=lambda s: (s["mean_roc_auc"] is None, -(s["mean_roc_auc"] or 0.0), s["detector"]))
    return summary


# -- output -------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned plain-text table that is also valid markdown."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        cells = [v.rjust(w) if r else v.ljust(w) for v, w, r in zip(values, widths, right, strict=True)]
        return "| " + " | ".join(cells) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if r else ("-" * (w + 2)) for w, r in zip(widths, right, strict=True))
    return "\n".join([line(headers), rule + "|", *(line(r) for r in rows)])


def _fmt(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_report(report: dict[str, Any]) -> str:
    """The header, the per-data-set table, the errors and the summary, as markdown-compatible text."""
    meta = report["meta"]
    pyod_note = (
        f"PyOD {meta['pyod_version']} references get {meta['pyod_input']} X"
        + (" (their own convention)" if meta["pyod_input"] == "raw" else " (the same scaled input as ours)")
        if meta["pyod_version"]
        else "PyOD not importable: no references"
    )
    lines = [
        "ADBench benchmark: fit on all X, score all X; ROC-AUC and average precision (PR-AUC) against y.",
        "",
        f"- Input: our detectors get robust-scaled X (per column: median, IQR/1.349, else std, else 1; "
        f"clipped to +-{CLIP:g}), as the pipeline's normaliser does; {pyod_note}.",
        f"- Seed {meta['seed']} (random_state where accepted); metrics: {meta['metrics']}; "
        "seconds = construct + fit + score; PyOD scores are decision_scores_ after fit(X) "
        "(X scored as training rows, each row left out of its own neighbours, as ours does).",
        f"- Data: {len(meta['datasets'])} data set{'' if len(meta['datasets']) == 1 else 's'} from {meta['data_dir']}.",
        *(f"- Note: {n}" for n in meta["notes"]),
        "",
    ]
    rows = [
        [
            c["dataset"],
            c["detector"],
            "ERROR" if c["error"] else _fmt(c["roc_auc"]),
            "ERROR" if c["error"] else _fmt(c["pr_auc"]),
            _fmt(c["seconds"], 2),
        ]
        for c in report["results"]
    ]
    lines.append(
        markdown_table(["dataset", "detector", "ROC-AUC", "PR-AUC", "seconds"], rows, [False, False, True, True, True])
    )
    errors = [c for c in report["results"] if c["error"]]
    if errors:
        lines += ["", f"Errors ({len(errors)}):"]
        lines += [f"- {c['detector']} on {c['dataset']}: {c['error']}" for c in errors]
    summary_rows = [
        [
            s["detector"],
            _fmt(s["mean_roc_auc"]),
            _fmt(s["mean_pr_auc"]),
            _fmt(s["mean_rank"], 2),
            _fmt(s["seconds"], 1),
            str(s["datasets"]),
            str(s["failures"]),
        ]
        for s in report["summary"]
    ]
    lines += [
        "",
        "Summary (means over the data sets each detector ran on; rank by ROC-AUC per data set, 1 = best, "
        "ties averaged, failures ranked last):",
        "",
        markdown_table(
            ["detector", "mean ROC-AUC", "mean PR-AUC", "mean rank", "total s", "data sets", "failures"],
            summary_rows,
            [False, True, True, True, True, True, True],
        ),
    ]
    return "\n".join(lines)


# -- command line -------------------------------------------------------------------


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [part.strip() for part in text.split(",") if part.strip()]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Benchmark the unsupervised detectors on the ADBench data sets beside PyOD's references.",
    )
    parser.add_argument(
        "--detectors",
        help="comma-separated registry names or pyod:<Class> (default: every unsupervised registered detector)",
    )
    parser.add_argument(
        "--datasets", help="comma-separated names or globs, e.g. 14_glass,'*thyroid*' or glass (default: all)"
    )
    parser.add_argument("--data-dir", default=str(DEFAULT_DATA_DIR), help="folder of .npz files (default: %(default)s)")
    parser.add_argument(
        "--pyod",
        default=",".join(n[len(PYOD_PREFIX) :] for n in PYOD_REFERENCES),
        help="PyOD reference classes, comma-separated; '' for none (default: %(default)s)",
    )
    parser.add_argument(
        "--pyod-input",
        choices=PYOD_INPUTS,
        default="raw",
        help="raw X for PyOD (its convention) or our scaled X (default: %(default)s)",
    )
    parser.add_argument(
        "--params", default="{}", help='per-detector params as JSON: \'{"autoencoder": {"epochs": 20}}\''
    )
    parser.add_argument("--seed", type=int, default=0, help="random_state for every detector that takes one")
    parser.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    try:
        params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not valid JSON: {exc}")
    if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
        parser.error('--params takes an object of objects: {"detector": {"param": value}}')
    args.params = params
    args.detectors = _split(args.detectors)
    args.datasets = _split(args.datasets)
    args.references = [f"{PYOD_PREFIX}{c}" for c in _split(args.pyod) or []]
    try:
        check_detector_names(args.detectors or [])
    except ValueError as exc:
        parser.error(str(exc))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run from the command line; 0 when every cell ran, 1 when some failed, 2 on bad arguments."""
    args = parse_args(argv)
    try:
        report = run(
            args.detectors,
            args.datasets,
            data_dir=args.data_dir,
            params=args.params,
            seed=args.seed,
            references=args.references,
            pyod_input=args.pyod_input,
        )
    except ValueError as exc:
        print(f"adbench: {exc}", file=sys.stderr)
        return 2
    print(format_report(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        _stderr(f"wrote {args.json}")
    return 1 if any(c["error"] for c in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
