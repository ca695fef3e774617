"""Time the per-batch data-fault checks a scan adds on clean data, where they should cost next to nothing.

What is timed, per batch of ``--rows`` rows (``--text`` text columns, ``--numeric`` float columns):

- ``readers._valid_text``: the UTF-8 check of every text column of an Arrow batch (clean text: one
  vectorised pass, no repair);
- ``BuiltinChecks.add`` over the same batch as pandas: its counts (non-null, duplicate-key hashes,
  infinities per numeric feature, U+FFFD per text column);
- ``NumbersFromText.apply`` on a batch whose numeric features arrive as text (the costly case: every
  value parsed), beside pandas' own ``to_numeric`` on the same text for reference.

    python benchmarks/checks.py                       # 100,000 rows, 3 text + 8 numeric columns
    python benchmarks/checks.py --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import pyarrow as pa

from tasks.coerce import NumbersFromText
from tasks.readers import _valid_text
from tasks.spec import parse_config
from tasks.validate import BuiltinChecks


def _batch(rows: int, text: int, numeric: int, seed: int = 0) -> pa.RecordBatch:
    rng = np.random.default_rng(seed)
    columns = {"id": np.arange(rows), "ts": np.full(rows, "2026-11-30 12:00:00")}
    words = np.array(["NL", "DE", "FR", "BE", "ES", "IT", "Zürich", "São Paulo"])
    for i in range(text):
        columns[f"t{i}"] = rng.choice(words, rows)
    for i in range(numeric):
        columns[f"x{i}"] = rng.lognormal(3, 1, rows)
    (batch,) = pa.Table.from_pydict(columns).combine_chunks().to_batches(max_chunksize=rows)
    return batch


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--text", type=int, default=3)
    parser.add_argument("--numeric", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    batch = _batch(args.rows, args.text, args.numeric)
    frame = pa.Table.from_batches([batch]).to_pandas()
    features = [c for c in frame.columns if c.startswith(("t", "x")) and c != "ts"]
    numeric = [c for c in features if c.startswith("x")]
    raw = {"name": "m", "source": "sqlite:///x.db", "table": "t", "partition_column": "ts", "key": "id"}
    spec = parse_config({"monitors": [{**raw, "features": features}]}).monitors[0]
    as_text = frame.assign(**{c: frame[c].map("{:.6g}".format).astype("str") for c in numeric})

    figures = {
        "utf8 check (clean text)": _best(lambda: _valid_text(batch), args.repeat),
        "built-in checks (counts)": _best(lambda: BuiltinChecks(spec, features).add(frame), args.repeat),
        "numbers from text (every value)": _best(lambda: NumbersFromText(numeric).apply(as_text), args.repeat),
        "  pd.to_numeric alone, reference": _best(
            lambda: [pd.to_numeric(as_text[c], errors="coerce") for c in numeric], args.repeat
        ),
    }
    print(f"{args.rows:,} rows, {args.text} text + {args.numeric} numeric columns, best of {args.repeat}")
    print(f"{'step':<34} {'ms':>9} {'ns/row':>8}")
    for name, seconds in figures.items():
        print(f"{name:<34} {seconds * 1e3:>9.1f} {seconds * 1e9 / args.rows:>8.0f}")


if __name__ == "__main__":
    main()
