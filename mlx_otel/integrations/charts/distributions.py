"""Distributions of one step's samples: per-sample rewards, thinking vs answer tokens."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from mlx_otel.config.visualization import ChartStyle
from mlx_otel.integrations.charts.figure import chart_path, colours, styled_figure
from mlx_otel.integrations.charts.inputs import step_suffix, to_float_array

__all__ = ["plot_reward_distribution", "plot_token_distribution"]


def plot_reward_distribution(
    style: ChartStyle,
    output_dir: Path,
    rewards: Sequence[float] | np.ndarray,
    filename: str | Path | None = None,
    step: int | None = None,
) -> Path:
    """Histogram with KDE; see :meth:`ChartGenerator.plot_reward_distribution`."""
    values = to_float_array(rewards, "rewards")
    if values.size == 0:
        raise ValueError("rewards: is empty; expected per-sample rewards")
    finite = values[np.isfinite(values)]
    skipped = values.size - finite.size
    if finite.size == 0:
        raise ValueError(f"rewards: no finite values ({skipped} NaN/inf)")
    path = chart_path(output_dir, filename, "reward_dist", step)
    palette = colours(style, 3)
    with styled_figure(style, path, style.figsize) as figure:
        ax = figure.subplots()
        # A KDE needs spread; seaborn would warn and skip it otherwise.
        kde = finite.size >= 2 and float(np.ptp(finite)) > 0
        sns.histplot(
            x=finite, kde=kde, ax=ax, color=palette[0], stat="count", bins="auto",
            label="rewards",
        )  # fmt: skip
        mean, median = float(finite.mean()), float(np.median(finite))
        ax.axvline(mean, color="#d62728", linestyle="--", linewidth=2, label=f"mean {mean:.3f}")
        ax.axvline(
            median, color="#2f2f2f", linestyle=":", linewidth=2, label=f"median {median:.3f}"
        )
        title = f"Reward distribution{step_suffix(step)}: n={finite.size}, std={finite.std():.3f}"
        if skipped:
            title += f", {skipped} non-finite skipped"
        ax.set_title(title)
        ax.set_xlabel("reward")
        ax.set_ylabel("samples")
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend(loc="best")
    return path


def plot_token_distribution(
    style: ChartStyle,
    output_dir: Path,
    thinking_tokens: Sequence[float] | np.ndarray,
    answer_tokens: Sequence[float] | np.ndarray,
    filename: str | Path | None = None,
    step: int | None = None,
    *,
    per: str = "sample",
) -> Path:
    """Overlaid histograms and violins; see :meth:`ChartGenerator.plot_token_distribution`."""
    groups: dict[str, np.ndarray] = {}
    skipped = 0
    for kind, argument, raw in (
        ("thinking", "thinking_tokens", thinking_tokens),
        ("answer", "answer_tokens", answer_tokens),
    ):
        values = to_float_array(raw, argument)
        finite = values[np.isfinite(values)]
        skipped += values.size - finite.size
        if (finite < 0).any():
            raise ValueError(f"{argument}: token counts cannot be negative")
        if finite.size:
            groups[kind] = finite
    if not groups:
        raise ValueError("thinking_tokens and answer_tokens: no finite token counts")
    path = chart_path(output_dir, filename, "token_dist", step)
    colour_of = dict(zip(("thinking", "answer"), colours(style, 2), strict=True))
    with styled_figure(style, path, style.figsize) as figure:
        hist_ax, violin_ax = figure.subplots(1, 2, width_ratios=(2, 1))
        for kind, values in groups.items():
            kde = values.size >= 2 and float(np.ptp(values)) > 0
            sns.histplot(
                x=values, kde=kde, ax=hist_ax, color=colour_of[kind], alpha=0.4,
                element="step", bins="auto",
                label=f"{kind} (n={values.size}, mean {values.mean():.1f})",
            )  # fmt: skip
            hist_ax.axvline(float(values.mean()), color=colour_of[kind], linestyle="--", linewidth=2)
        hist_ax.set_xlabel(f"tokens per {per}")
        hist_ax.set_ylabel("samples")
        hist_ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        hist_ax.legend(loc="best")
        title = f"Token distribution{step_suffix(step)}"
        if skipped:
            title += f" · {skipped} non-finite skipped"
        hist_ax.set_title(title)
        long = pd.DataFrame(
            {
                "kind": np.concatenate([[kind] * values.size for kind, values in groups.items()]),
                "tokens": np.concatenate(list(groups.values())),
            }
        )
        sns.violinplot(
            long, x="kind", y="tokens", hue="kind", palette=colour_of, ax=violin_ax,
            inner="quart", cut=0, legend=False,
        )  # fmt: skip
        violin_ax.set_title("thinking vs answer")
        violin_ax.set_xlabel("")
        violin_ax.set_ylabel(f"tokens per {per}")
    return path
