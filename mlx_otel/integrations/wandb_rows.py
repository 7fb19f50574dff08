"""What one WandB row holds: section keys, numbers, histograms and sample rows.

A WandB run is read by section (``train/``, ``memory/``, ``rl/``,
``gradients/``, ``custom/``), so each metric gets its key from the
catalogue; numbers are read with the package's one coercion
(:func:`mlx_otel.records.to_number`), sequences become a histogram with its
summary statistics. Nothing here talks to WandB's server: the logger of
:mod:`mlx_otel.integrations.wandb_bridge` logs what these functions build.

    >>> group_key("loss"), group_key("my_metric")
    ('train/loss', 'custom/my_metric')
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from types import ModuleType
from typing import Any

from mlx_otel.catalog import METRICS, RECORD_FIELDS, Source, wandb_group_by_name
from mlx_otel.records import to_number, to_numbers

__all__ = [
    "CHART_GROUP",
    "DEFAULT_KEY_GROUPS",
    "GRADIENT_GROUP",
    "SAMPLES_KEY",
    "STEP_KEY",
    "distribution",
    "group_key",
    "metric_row",
    "sample_rows",
    "sanitize_artifact_name",
]

STEP_KEY = "train/step"
"""The x-axis of every chart: the training step, logged as a metric of its own."""

DEFAULT_KEY_GROUPS: dict[str, str] = {
    # Trainer metrics reach WandB under their full key (rl/kl), so a user's own
    # "kl" stays a custom metric.
    **{m.key: f"{m.wandb_group}/" for m in METRICS if m.source is not Source.TRAINER},
    **{key: f"{group}/" for key, (group, _unit) in RECORD_FIELDS.items()},
}
"""Metric short name -> WandB section, from the catalogue. Other names go
where :func:`mlx_otel.catalog.wandb_group` puts them (``memory/`` when they
mention memory or end in ``_mb``/``_bytes``, otherwise ``custom/``); names
that already contain ``/`` are kept as they are."""

SAMPLES_KEY = "rl/samples"
CHART_GROUP = "charts/"
GRADIENT_GROUP = "gradients/"
SAMPLE_COLUMNS = ["step", "prompt", "generation", "reference", "reward"]
_HISTOGRAM_BINS = 64

#: Called with a description of a value that is not what it should be.
Invalid = Callable[[str], None]
#: A context in which a failing WandB call is counted, not raised.
Guard = Callable[[str], AbstractContextManager[None]]


def group_key(name: str, key_groups: Mapping[str, str] | None = None) -> str:
    """The WandB key of a metric: its section prefix plus its short name.

    >>> group_key("loss")
    'train/loss'
    >>> group_key("memory_allocated_mb"), group_key("my_metric"), group_key("eval/acc")
    ('memory/memory_allocated_mb', 'custom/my_metric', 'eval/acc')
    """
    if "/" in name:
        return name
    groups = DEFAULT_KEY_GROUPS if key_groups is None else key_groups
    prefix = groups.get(name)
    if prefix is None:
        prefix = wandb_group_by_name(name)
    prefix = prefix.rstrip("/")
    return f"{prefix}/{name}" if prefix else name


def distribution(
    wandb: ModuleType, key: str, values: Any, invalid: Invalid, guard: Guard
) -> dict[str, Any]:
    """A histogram plus mean/std/min/max of the finite values."""
    array = to_numbers(values)
    if array is None:
        invalid(f"{key}: expected a sequence of numbers, got {type(values).__name__}")
        return {}
    numbers_ = array.tolist()
    finite = [v for v in numbers_ if math.isfinite(v)]
    row: dict[str, Any] = {}
    # NaN/inf cannot be binned; they are left out and counted so they stay visible.
    if len(finite) != len(numbers_):
        row[f"{key}/nonfinite"] = len(numbers_) - len(finite)
    if not finite:
        return row
    with guard("histogram"):
        row[key] = wandb.Histogram(finite, num_bins=_HISTOGRAM_BINS)
    mean = math.fsum(finite) / len(finite)
    row[f"{key}/mean"] = mean
    row[f"{key}/std"] = math.sqrt(math.fsum((v - mean) ** 2 for v in finite) / len(finite))
    row[f"{key}/min"] = min(finite)
    row[f"{key}/max"] = max(finite)
    return row


def metric_row(
    wandb: ModuleType,
    metrics: Mapping[str, Any],
    key_groups: Mapping[str, str],
    invalid: Invalid,
    guard: Guard,
) -> dict[str, Any]:
    """One row of metrics by section key: numbers as they are, sequences as histograms."""
    from wandb.sdk.data_types.base_types.wb_value import WBValue

    row: dict[str, Any] = {}
    for name, value in metrics.items():
        if value is None:
            continue
        key = group_key(str(name), key_groups)
        if isinstance(value, WBValue):  # Image, Table, Histogram: as given
            row[key] = value
            continue
        number = to_number(value)
        if number is not None:
            row[key] = number  # NaN/inf pass through: a NaN loss is a signal
            continue
        if to_numbers(value) is not None:
            row.update(distribution(wandb, key, value, invalid, guard))
            continue
        invalid(f"{key}: not a number: {value!r}")
    return row


def sample_rows(
    step: int | None,
    prompts: Sequence[Any],
    generations: Sequence[Any],
    references: Sequence[Any] | None,
    rewards: Sequence[Any] | None,
    max_rows: int,
    invalid: Invalid,
) -> list[list[Any]]:
    """The rows of a sample table (:data:`SAMPLE_COLUMNS`), at most ``max_rows``.

    >>> sample_rows(3, ["2+2?"], ["4"], None, [1], 20, print)
    [[3, '2+2?', '4', None, 1.0]]
    """
    n = len(prompts)
    columns = [generations, references, rewards]
    if any(col is not None and len(col) != n for col in columns):
        invalid(
            "log_sample_table: prompts, generations, references and "
            "rewards differ in length; extra rows dropped"
        )
        n = min([n, *(len(col) for col in columns if col is not None)])
    rows = []
    for i in range(min(n, max(max_rows, 0))):
        reward = to_number(rewards[i]) if rewards is not None else None
        reference = None if references is None else str(references[i])
        rows.append([step, str(prompts[i]), str(generations[i]), reference, reward])
    return rows


def sanitize_artifact_name(name: str) -> str:
    """An artifact name WandB accepts: letters, digits, ``-``, ``_`` and ``.`` only.

    >>> sanitize_artifact_name("model run/7")
    'model-run-7'
    """
    return re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
