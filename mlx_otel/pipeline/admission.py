"""What a step may carry: custom metric names, label values and numbers, admitted once.

``log_training_step`` takes any keyword and a trainer report any label
value; each becomes a Prometheus series, so names are sanitised and capped
(``exporter.max_custom_metrics``) when first seen, and the verdict is kept:
the next step with the same name costs a dictionary lookup. A value that is
not a number is refused with a message naming the keyword and what it
expected, counted in ``mlx_otel_errors_total{kind}`` and logged once per
keyword; with ``strict`` it raises instead.

    >>> from mlx_otel.errors import ErrorLedger
    >>> admission = Admission(ledger=ErrorLedger(), max_custom=2)
    >>> admission.custom_name("My Metric!"), admission.to_float("x", "text")
    ('my_metric', None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from mlx_otel.errors import ErrorLedger
from mlx_otel.pipeline.step_arguments import STEP_ARGUMENTS
from mlx_otel.records import to_number

__all__ = ["Admission"]

# Custom metric names become label values: keep them tidy and bounded.
_NAME_RE = re.compile(r"[^a-zA-Z0-9_]+")
#: Keyword of log_training_step for a stored key, where the two differ.
_ARGUMENT_NAMES = {a.stored: a.name for a in STEP_ARGUMENTS if a.stored != a.name}
#: Label values longer than this are cut (they become Prometheus label values).
_MAX_LABEL = 64


class Admission:
    """The custom names and label values admitted so far, and the refusal of the rest."""

    def __init__(self, *, ledger: ErrorLedger, max_custom: int, strict: bool = False) -> None:
        self._ledger = ledger
        self._max_custom = max_custom
        self.strict = strict
        #: keyword -> sanitised custom name, or "" once refused
        self.custom_names: dict[str, str] = {}
        #: labelled catalogue key -> label value given -> label value stored, or "" once refused
        self.labels: dict[str, dict[str, str]] = {}
        #: The keywords admitted as custom metrics (the training thread's fast check).
        self.admitted_custom: frozenset[str] = frozenset()
        #: Whether an admitted keyword's name was changed (``"My Metric!"`` -> ``my_metric``):
        #: until then a step's custom values keep their keywords.
        self.renamed = False

    def custom_name(self, key: str) -> str:
        """The sanitised name of a new custom metric, or "" if refused."""
        name = _NAME_RE.sub("_", key).strip("_").lower()[:64]
        admitted = sum(1 for v in self.custom_names.values() if v)
        stored = ""
        if not name:
            self.reject(key, key, "invalid_value")
        elif admitted >= self._max_custom:
            self._ledger.report(
                "custom_metric_cap",
                key,
                f"custom metric {key!r} not exported: the cap of {self._max_custom} custom "
                "metrics is reached (raise exporter.max_custom_metrics)",
            )
        else:
            stored = name
            self.admitted_custom = self.admitted_custom | {key}
            self.renamed = self.renamed or name != key
        self.custom_names[key] = stored
        return stored

    def labelled(self, key: str, series: Mapping[Any, Any]) -> dict[str, float]:
        """The admitted label values of a labelled metric, as numbers."""
        labels = self.labels.setdefault(key, {})
        stored: dict[str, float] = {}
        for label, value in series.items():
            name = labels.get(label)
            if name is None:
                name = self._admit_label(key, labels, label)
            if name and (number := self.to_float(f"{key}/{name}", value)) is not None:
                stored[name] = number
        return stored

    def _admit_label(self, key: str, labels: dict[str, str], label: Any) -> str:
        """The stored label value of a labelled metric, or "" beyond the cap (per metric)."""
        name = str(label)[:_MAX_LABEL]
        if not name:  # Prometheus reads an empty label value as no label at all
            self.reject(f"{key}/", label, "invalid_value")
        elif sum(1 for v in labels.values() if v) >= self._max_custom:
            self._ledger.report(
                "custom_metric_cap",
                f"{key}/{name}",
                f"{key}={name!r} not exported: the cap of {self._max_custom} series per metric "
                "is reached (raise exporter.max_custom_metrics)",
            )
            name = ""
        labels[label] = name
        return name

    def to_float(self, key: str, value: Any) -> float | None:
        """``value`` as a float, or None (refused and counted) if it is no number."""
        number = to_number(value)
        if number is None:
            self.reject(key, value, "invalid_value")
        return number

    def reject(self, key: str, value: Any, kind: str, reason: str | None = None) -> None:
        """Refuse ``key=value``: count and log it once (``kind``), or raise when strict."""
        key = _ARGUMENT_NAMES.get(key, key)
        text = repr(value)
        message = f"{key}={text if len(text) <= 60 else text[:57] + '...'} is not recorded: "
        message += reason or (
            "a count cannot be negative"
            if kind == "negative_count"
            else "expected a number (int, float, NumPy or MLX scalar)"
        )
        if self.strict:
            raise ValueError(message)
        self._ledger.report(kind, key, message)
