"""Time fitting (and scoring) each detector on a table-sized matrix: the 60-second target.

    python benchmarks/fit_time.py                     # 100,000 x 20, every registered detector
    python benchmarks/fit_time.py --rows 31000 --detectors ensemble,autoencoder

The data imitates a normalised partition window: 20 correlated numeric features (robust
scaled), 1% of rows with outlying values. Prints fit seconds, score seconds for the same
rows, epochs run and the stop reason for the Keras families, and peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import detectors  # noqa: E402


def table(rows: int, features: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlated Gaussian features with 1% outliers, and labels (for the classifier)."""
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(features, features)) / np.sqrt(features)
    X = rng.normal(size=(rows, features)) @ mixing
    y = np.zeros(rows, dtype=int)
    outliers = rng.choice(rows, size=rows // 100, replace=False)
    X[outliers] += rng.choice([-1.0, 1.0], size=(len(outliers), features)) * rng.uniform(3, 8, size=(len(outliers), 1))
    y[outliers] = 1
    return X.astype(np.float32), y


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--detectors", default=",".join(detectors.available()))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    X, y = table(args.rows, args.features, args.seed)
    print(f"{args.rows:,} rows x {args.features} features, seed {args.seed}, {os.cpu_count()} CPUs")
    print(f"| {'detector':<12} | {'fit s':>7} | {'score s':>7} | {'epochs':>6} | {'stop reason':<16} |")
    print(f"|{'-' * 14}|{'-' * 9}|{'-' * 9}|{'-' * 8}|{'-' * 18}|")
    for name in args.detectors.split(","):
        detector = detectors.create(name, random_state=args.seed)
        started = time.perf_counter()
        detector.fit(X, y) if detector.supervised else detector.fit(X)
        fit_s = time.perf_counter() - started
        started = time.perf_counter()
        detector.score(X)
        score_s = time.perf_counter() - started
        summary = detector.training_summary_
        members = summary.get("members", {})
        keras_summaries = [summary] if "epochs_run" in summary else [m for m in members.values() if "epochs_run" in m]
        epochs = "/".join(str(s["epochs_run"]) for s in keras_summaries) or "-"
        stops = "/".join(s["stop_reason"] for s in keras_summaries) or "-"
        print(f"| {name:<12} | {fit_s:7.1f} | {score_s:7.1f} | {epochs:>6} | {stops:<16} |", flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS {peak_mb:,.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
