"""Which dashboard panel a series goes in: by what the series is, one unit per axis.

A column is placed by its catalogue entry (:mod:`mlx_otel.catalog`), not by
the last part of its name: ``anomaly_score/loss`` is the spike score of the
loss, not a loss; ``anomalies/loss`` counts the steps flagged so far;
``timing/reward`` is a phase's duration in seconds, not a reward. Lines
share a panel only when they share a unit (memory is drawn in MiB, bytes
converted), so no series is read off another's axis.

    >>> [(p.title, p.names) for p in dashboard_panels(["loss", "anomaly_score/loss", "timing/reward"])]
    [('Loss', ['loss']), ('Spike scores', ['anomaly_score/loss']), ('Step phases', ['timing/reward'])]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from mlx_otel.catalog import Kind, is_memory_field
from mlx_otel.integrations.charts.curves import HEADLINE_ORDER
from mlx_otel.integrations.charts.inputs import catalogued, unit_of
from mlx_otel.integrations.charts.memory import MEMORY_UNIT

__all__ = ["Panel", "dashboard_panels", "panel_unit"]

#: Labelled metrics whose columns (``family/label``) share a panel of their own.
_FAMILIES: dict[str, str] = {
    "anomaly_score": "Spike scores",
    "anomalies": "Anomalous steps (cumulative)",
    "timing": "Step phases",
}


@dataclass(frozen=True)
class Panel:
    """One dashboard panel: its title, the series it draws and their one unit."""

    title: str
    names: list[str]
    unit: str


def _leaf(name: str) -> str:
    # "train/loss" and "loss" are the same kind of metric.
    return name.rsplit("/", 1)[-1].lower()


def _family(name: str) -> str | None:
    family, slash, _ = name.partition("/")
    return _FAMILIES.get(family) if slash else None


def _is_loss(name: str) -> bool:
    leaf = _leaf(name)
    return leaf == "loss" or leaf.endswith("_loss")


def _is_reward(name: str) -> bool:
    leaf = _leaf(name)
    return leaf in {"reward", "reward_mean", "mean_reward"} or leaf.endswith("_reward")


#: Labelled metrics of a completion's length (tokens per completion, by
#: statistic or outcome): tens of tokens, beside per-step totals of hundreds.
_COMPLETION_LENGTHS = frozenset({"generated_tokens", "completion_length_mean"})


def _is_completion_length(name: str) -> bool:
    family, slash, _ = name.partition("/")
    return bool(slash) and family in _COMPLETION_LENGTHS


def _is_token_count(name: str) -> bool:
    # Tokens per step or per sample; a cumulative count (a counter) climbs
    # out of their range and gets a panel of its own.
    metric = catalogued(name)
    cumulative = metric is not None and metric.kind is Kind.COUNTER
    return "tokens" in name.lower() and unit_of(name) == "tokens" and not cumulative


_GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("Loss", _is_loss),
    ("Reward", _is_reward),
    ("Gradient norm", lambda n: _leaf(n) in {"grad_norm", "gradient_norm"}),
    ("Learning rate", lambda n: _leaf(n) in {"learning_rate", "lr"}),
    (f"Memory [{MEMORY_UNIT}]", is_memory_field),
    ("Completion length", _is_completion_length),
    ("Tokens", _is_token_count),
    *((title, lambda n, t=title: _family(n) == t) for title in _FAMILIES.values()),
)


def panel_unit(name: str) -> str:
    """The unit ``name`` is drawn in on the dashboard (memory in MiB)."""
    return MEMORY_UNIT if is_memory_field(name) else unit_of(name)


def _by_unit(title: str, members: list[str]) -> list[Panel]:
    units: dict[str, list[str]] = {}
    for name in members:
        units.setdefault(panel_unit(name), []).append(name)
    if len(units) == 1:
        ((unit, names),) = units.items()
        return [Panel(title, names, unit)]
    return [
        Panel(f"{title} [{unit}]" if unit else title, names, unit) for unit, names in units.items()
    ]


def dashboard_panels(names: list[str]) -> list[Panel]:
    """The dashboard's panels in order: the known kinds, then one panel per other
    series (the training curves' headline metrics first).

    A series of a labelled family (``anomaly_score/*``) is never taken for
    the kind its label names.
    """
    panels: list[Panel] = []
    used: set[str] = set()
    for title, matches in _GROUPS:
        members = [
            name
            for name in names
            if name not in used
            and (_family(name) is None or _family(name) == title)
            and matches(name)
        ]
        if members:
            panels.extend(_by_unit(title, members))
            used.update(members)
    others = [name for name in names if name not in used]
    first = [name for name in HEADLINE_ORDER if name in others]
    others = first + [name for name in others if name not in first]
    panels.extend(Panel(name, [name], panel_unit(name)) for name in others)
    return panels
