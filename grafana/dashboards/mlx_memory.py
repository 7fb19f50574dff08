"""*MLX Memory*: how much memory the run holds, whether it leaks, and when it runs out.

MLX's active, cache and peak memory against the alert threshold and MLX's
limit, the process and the system, the leak slope the exporter fits, a
prediction of the time left before the limit, and memory by monitored block.

    python -m mlx_otel dashboards   # writes mlx_memory.json beside this file
"""

from __future__ import annotations

from . import common

NAME = "mlx_memory"

# Window of the PromQL slope used for the prediction: long enough to ride
# over the saw-tooth of a training step, short enough to see a new leak.
SLOPE_WINDOW = "10m"
# Floor of the slope (bytes/s) in the prediction, so a flat or shrinking
# memory gives a very long time instead of a division by zero or a negative.
MIN_SLOPE_BYTES_PER_SECOND = 1


def mlx_in_use() -> str:
    return f"({common.series('memory_active')} + {common.series('memory_cache')})"


def time_to_limit_expr() -> str:
    active = common.series("memory_active")
    headroom = f"({common.series('memory_limit')} - {mlx_in_use()})"
    slope = f"clamp_min(deriv({active}[{SLOPE_WINDOW}]), {MIN_SLOPE_BYTES_PER_SECOND})"
    return f"{headroom} / {slope}"


def active_now() -> common.Panel:
    return common.stat(
        1,
        "Active memory",
        [common.target(common.series("memory_active"))],
        unit=common.unit("memory_active"),
        description=common.describe("memory_active"),
    )


def peak_now() -> common.Panel:
    return common.stat(
        2,
        "Peak memory",
        [common.target(common.series("memory_peak"))],
        unit=common.unit("memory_peak"),
        description=common.describe("memory_peak"),
    )


def threshold_used() -> common.Panel:
    return common.stat(
        3,
        "Active + cache / threshold",
        [common.target(f"{mlx_in_use()} / {common.series('memory_threshold')}")],
        unit="percentunit",
        description=common.describe(
            "Share of the configured memory threshold in use (active + cache).",
            "memory_threshold",
        ),
        thresholds=((None, "green"), (0.8, "orange"), (1.0, "red")),
    )


def time_to_limit() -> common.Panel:
    return common.stat(
        4,
        "Predicted time to the MLX limit",
        [common.target(time_to_limit_expr())],
        unit="s",
        description=(
            "Seconds until active + cache memory reaches the MLX limit if active memory "
            f"keeps growing at its slope over the last {SLOPE_WINDOW}: (limit - (active + cache)) "
            f"/ max(deriv(active[{SLOPE_WINDOW}]), {MIN_SLOPE_BYTES_PER_SECOND} B/s). The slope "
            f"is floored at {MIN_SLOPE_BYTES_PER_SECOND} B/s, so a run that does not grow shows "
            "a very long time (years) rather than nothing."
        ),
        thresholds=((None, "red"), (3600, "orange"), (86400, "green")),
    )


def mlx_memory() -> common.Panel:
    return common.timeseries(
        5,
        "MLX memory vs threshold and limit",
        [
            common.target(common.series("memory_active"), f"active {common.RUN_LEGEND}"),
            common.target(common.series("memory_cache"), f"cache {common.RUN_LEGEND}"),
            common.target(common.series("memory_peak"), f"peak {common.RUN_LEGEND}"),
            common.target(common.series("memory_threshold"), f"threshold {common.RUN_LEGEND}"),
            common.target(common.series("memory_limit"), f"limit {common.RUN_LEGEND}"),
        ],
        unit=common.unit("memory_active"),
        description=common.describe(
            "memory_active",
            "memory_cache",
            "memory_peak",
            "memory_threshold",
            "memory_limit",
            "The dashed lines are the alert threshold and MLX's limit; the axis is "
            "logarithmic so that megabytes of use and gigabytes of limit both show.",
        ),
        dashed=("^threshold .*", "^limit .*"),
        log_scale=True,
        log_base=2,
        height=9,
    )


def process_memory() -> common.Panel:
    return common.timeseries(
        6,
        "Process and system memory",
        [
            common.target(common.series("process_resident_memory"), f"RSS {common.RUN_LEGEND}"),
            common.target(
                common.series("memory_allocated"), f"reported by loop {common.RUN_LEGEND}"
            ),
            common.target(
                common.series("system_memory_available"), f"system available {common.RUN_LEGEND}"
            ),
            common.target(
                common.series("system_memory_total"), f"system total {common.RUN_LEGEND}"
            ),
        ],
        unit=common.unit("process_resident_memory"),
        description=common.describe(
            "process_resident_memory",
            "memory_allocated",
            "system_memory_available",
            "system_memory_total",
            "The axis is logarithmic so that the process and the machine both show.",
        ),
        dashed=("^system total .*",),
        log_scale=True,
        log_base=2,
        height=9,
    )


def leak_slope() -> common.Panel:
    return common.timeseries(
        7,
        "Leak slope (bytes per second)",
        [
            common.target(common.series("memory_leak_slope"), f"exporter fit {common.RUN_LEGEND}"),
            common.target(
                f"deriv({common.series('memory_active')}[{SLOPE_WINDOW}])",
                f"deriv {SLOPE_WINDOW} {common.RUN_LEGEND}",
            ),
        ],
        unit=common.unit("memory_leak_slope"),
        description=common.describe(
            "memory_leak_slope",
            f"For comparison, Prometheus' own deriv() of active memory over {SLOPE_WINDOW}. "
            "A slope that stays above zero for many steps is a leak.",
        ),
    )


def leak_slope_per_step() -> common.Panel:
    return common.timeseries(
        8,
        "Leak slope per step",
        [common.target(common.series("memory_leak_slope_per_step"))],
        unit=common.unit("memory_leak_slope_per_step"),
        description=common.describe("memory_leak_slope_per_step"),
    )


def predicted_time_to_limit() -> common.Panel:
    return common.timeseries(
        9,
        "Predicted time to the MLX limit over time",
        [common.target(time_to_limit_expr())],
        unit="s",
        description=time_to_limit().description,
        log_scale=True,
    )


def block_delta() -> common.Panel:
    return common.timeseries(
        10,
        "Memory delta by block",
        [common.target(common.series("memory_block_delta"), common.legend("block"))],
        unit=common.unit("memory_block_delta"),
        description=common.describe(
            "memory_block_delta", "A block whose delta stays positive keeps memory alive."
        ),
    )


def block_peak() -> common.Panel:
    return common.timeseries(
        11,
        "Peak memory by block",
        [common.target(common.series("memory_block_peak"), common.legend("block"))],
        unit=common.unit("memory_block_peak"),
        description=common.describe("memory_block_peak"),
        min_zero=True,
    )


dashboard = common.dashboard(
    "MLX Memory",
    uid="mlx-memory",
    description="MLX, process and system memory of MLX runs, leak slopes and time to the limit.",
    rows=[
        [active_now(), peak_now(), threshold_used(), time_to_limit()],
        [mlx_memory(), process_memory()],
        [leak_slope(), leak_slope_per_step(), predicted_time_to_limit()],
        [block_delta(), block_peak()],
    ],
)
