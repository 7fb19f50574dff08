"""*Gradient Flow*: how the gradient spreads over the model's layers.

The global gradient norm, the layers with the largest norms over time, every
layer as a heatmap row, and a table of each layer's latest norm. Vanishing
gradients show as dark rows, exploding ones as a few layers far above the rest.

    python -m mlx_otel dashboards   # writes gradient_flow.json beside this file
"""

from __future__ import annotations

from . import common

NAME = "gradient_flow"

# Layers drawn as lines: more than ten makes the panel unreadable; the
# heatmap and the table show all of them.
TOP_LAYERS = 10


def global_grad_norm() -> common.Panel:
    return common.timeseries(
        1,
        "Global gradient norm",
        [common.target(common.series("grad_norm"))],
        unit=common.unit("grad_norm"),
        description=common.describe("grad_norm"),
    )


def layer_norm_spread() -> common.Panel:
    layers = common.series("layer_grad_norm")
    return common.timeseries(
        2,
        "Largest / smallest layer norm",
        [common.target(f"max by (run_id, rank) ({layers}) / min by (run_id, rank) ({layers} > 0)")],
        unit="short",
        description=common.describe(
            "How many times larger the largest layer gradient is than the smallest non-zero "
            "one. A ratio that keeps growing means some layers stop learning.",
            "layer_grad_norm",
        ),
        log_scale=True,
    )


def top_layers() -> common.Panel:
    layers = common.series("layer_grad_norm")
    return common.timeseries(
        3,
        f"Top {TOP_LAYERS} layers by gradient norm",
        [common.target(f"topk({TOP_LAYERS}, {layers})", common.legend("layer"))],
        unit=common.unit("layer_grad_norm"),
        description=common.describe(
            "layer_grad_norm",
            f"The {TOP_LAYERS} largest at each moment, so more layers may appear over time.",
        ),
        log_scale=True,
        height=10,
    )


def layer_heatmap() -> common.Panel:
    return common.heatmap(
        4,
        "Gradient norm by layer",
        common.target(common.series("layer_grad_norm"), "{{layer}}"),
        unit="short",
        cell_unit=common.unit("layer_grad_norm"),
        description=common.describe(
            "layer_grad_norm", "One row per layer, coloured by its norm (exponential scale)."
        ),
        log_colors=True,
        height=10,
    )


def latest_by_layer() -> common.Panel:
    return common.table(
        5,
        "Latest gradient norm per layer",
        [
            common.target(
                f"sort_desc({common.series('layer_grad_norm')})",
                "{{layer}}",
                instant=True,
                format="table",
            )
        ],
        unit=common.unit("layer_grad_norm"),
        description=common.describe("layer_grad_norm", "Largest first."),
    )


dashboard = common.dashboard(
    "Gradient Flow",
    uid="mlx-gradient-flow",
    description="Per-layer gradient norms of MLX runs (mlx_otel TrainingMonitor.log_gradients).",
    rows=[
        [global_grad_norm(), layer_norm_spread()],
        [top_layers(), layer_heatmap()],
        [latest_by_layer()],
    ],
)
