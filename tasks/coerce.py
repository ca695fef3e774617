"""Coerce: numeric features that arrive as text are parsed back to numbers before validation and scoring.

A column the model was trained on as numbers sometimes reaches a partition as text
(an upstream ``CAST``, a CSV load, a schema change to ``TEXT``): ``"12.50"`` is still
12.5. The scan parses such features batch by batch with ``parse_numbers``; what is not a
number (``"n/a"``) becomes missing, imputed like any missing value. The partition is
scored and ``tablewatch_numbers_as_text`` records a warning with the counts, or
quarantines it when fewer than half the values present are numbers (then the column no
longer holds the feature the model knows).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tasks.normalise import parse_numbers
from tasks.validate import ExpectationResult

CHECK = "tablewatch_numbers_as_text"
MIN_NUMBER_SHARE = 0.5
"""Below this share of numbers among the values present the feature is no longer numeric: quarantine."""


@dataclass
class _Tally:
    text: int = 0  # values present (not missing, not blank) in text-typed batches of the column
    not_numbers: int = 0
    sample: list[str] = field(default_factory=list)


class NumbersFromText:
    """Parses the model's numeric features wherever a batch holds them as text, and counts what it did."""

    def __init__(self, numeric_features: list[str]) -> None:
        self.numeric_features = numeric_features
        self._tallies: dict[str, _Tally] = {}

    def apply(self, frame: pd.DataFrame) -> pd.DataFrame:
        """``frame`` with its text-typed numeric features as float64 (a copy when anything changed)."""
        parsed: dict[str, object] = {}
        for name in self.numeric_features:
            if name not in frame.columns:
                continue
            column = frame[name]
            if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
                continue
            values, not_numbers = parse_numbers(column)
            tally = self._tallies.setdefault(name, _Tally())
            tally.text += int((~np.isnan(values)).sum() + not_numbers.sum())  # blank text is missing, not text
            tally.not_numbers += int(not_numbers.sum())
            if len(tally.sample) < 3:
                tally.sample += [str(v) for v in column[not_numbers].iloc[: 3 - len(tally.sample)]]
            parsed[name] = values
        return frame.assign(**parsed) if parsed else frame

    def results(self) -> list[ExpectationResult]:
        """One failed check per feature that arrived as text: a warning, or critical when mostly not numbers."""
        out = []
        for name, tally in self._tallies.items():
            if not tally.text:
                continue
            numbers = tally.text - tally.not_numbers
            severity = "warning" if numbers >= MIN_NUMBER_SHARE * tally.text else "critical"
            observed = f"numeric feature arrived as text: {numbers:,} of {tally.text:,} values parsed as numbers"
            if tally.not_numbers:
                observed += f", {tally.not_numbers:,} not numbers (such as {tally.sample!r}) taken as missing"
            details = {"text_values": tally.text, "not_numbers": tally.not_numbers, "sample_unexpected": tally.sample}
            out.append(ExpectationResult(CHECK, name, severity, False, observed, details))
        return out
