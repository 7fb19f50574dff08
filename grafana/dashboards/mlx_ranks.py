"""*MLX Ranks*: a run of many ranks seen as one: the slowest, the largest, the totals.

For 8 or 64 ranks, side-by-side lines stop being readable; these panels
reduce the ranks of each run: the slowest and the fastest rank's step time
and their ratio (a straggler), the largest and the summed memory, tokens per
second over all ranks, and each rank's steps against the leading rank (a
rank that stopped while the others go on, which MLXRankStalled alerts on).

Host-level series (``mlx_system_memory_*``) are served by local rank 0 of
each host only, so sums over ranks count each host once; MLX and process
memory are per process and add up.

    python -m mlx_otel dashboards   # writes mlx_ranks.json beside this file
"""

from __future__ import annotations

from . import common

NAME = "mlx_ranks"


def step_time_by_rank() -> str:
    """Mean step time of each rank over the rate interval."""
    total = common.series("step_duration", suffix="_sum")
    count = common.series("step_duration", suffix="_count")
    return f"(rate({total}[$__rate_interval]) / rate({count}[$__rate_interval]))"


def straggler_ratio_expr() -> str:
    by_rank = step_time_by_rank()
    return f"max by (run_id) ({by_rank}) / min by (run_id) ({by_rank})"


def ranks_reporting() -> common.Panel:
    return common.stat(
        1,
        "Ranks reporting",
        [common.target(f"count by (run_id) ({common.series('steps')})", "{{run_id}}")],
        unit="short",
        description="Ranks of each run whose exporter Prometheus scrapes now.",
    )


def straggler_now() -> common.Panel:
    return common.stat(
        2,
        "Slowest / fastest rank now",
        [common.target(straggler_ratio_expr(), "{{run_id}}")],
        unit="x",
        description=(
            "Mean step time of the slowest rank over that of the fastest, per run: 1 when "
            "the ranks keep pace, 2 when one rank takes twice as long (the others wait for "
            "it at every collective)."
        ),
        thresholds=((None, "green"), (1.25, "orange"), (2.0, "red")),
    )


def tokens_now() -> common.Panel:
    tokens = common.series("tokens")
    return common.stat(
        3,
        "Tokens per second, all ranks",
        [common.target(f"sum by (run_id) (rate({tokens}[$__rate_interval]))", "{{run_id}}")],
        unit="short",
        description=common.describe("Generated tokens per second summed over the ranks.", "tokens"),
    )


def finished_ranks() -> common.Panel:
    finished = common.series("run_finished")
    return common.stat(
        4,
        "Ranks finished",
        [common.target(f"sum by (run_id) ({finished})", "{{run_id}}")],
        unit="short",
        description=common.describe(
            "Ranks of each run that said they ended cleanly.", "run_finished"
        ),
    )


def slowest_fastest() -> common.Panel:
    by_rank = step_time_by_rank()
    return common.timeseries(
        5,
        "Slowest and fastest rank step time",
        [
            common.target(f"max by (run_id) ({by_rank})", "slowest {{run_id}}"),
            common.target(f"min by (run_id) ({by_rank})", "fastest {{run_id}}"),
        ],
        unit=common.unit("step_duration"),
        description=common.describe(
            "Mean step time of the slowest and of the fastest rank of each run "
            "(rate of the step_duration histogram's sum over its count).",
        ),
        min_zero=True,
    )


def straggler_ratio() -> common.Panel:
    return common.timeseries(
        6,
        "Straggler ratio (slowest / fastest)",
        [common.target(straggler_ratio_expr(), "{{run_id}}")],
        unit="x",
        description=(
            "Slowest rank's mean step time over the fastest rank's, per run. A ratio that "
            "grows points at one slow host, device or data shard."
        ),
    )


def memory_max_and_sum() -> common.Panel:
    active = common.series("memory_active")
    rss = common.series("process_resident_memory")
    return common.timeseries(
        7,
        "MLX memory across ranks: largest and total",
        [
            common.target(f"max by (run_id) ({active})", "largest rank {{run_id}}"),
            common.target(f"sum by (run_id) ({active})", "all ranks {{run_id}}"),
            common.target(f"sum by (run_id) ({rss})", "resident, all ranks {{run_id}}"),
        ],
        unit=common.unit("memory_active"),
        description=common.describe(
            "memory_active", "The largest rank is the one to run out first; the totals add "
            "the ranks' processes (each holds its own MLX memory).",
        ),  # fmt: skip
        log_scale=True,
        log_base=2,
    )


def host_memory() -> common.Panel:
    available = common.series("system_memory_available")
    total = common.series("system_memory_total")
    return common.timeseries(
        8,
        "Host memory available, all hosts",
        [
            common.target(f"sum by (run_id) ({available})", "available {{run_id}}"),
            common.target(f"sum by (run_id) ({total})", "total {{run_id}}"),
        ],
        unit=common.unit("system_memory_available"),
        description=common.describe(
            "system_memory_available", "Summed over the hosts of each run: only local "
            "rank 0 of a host serves host memory, so no host is counted twice.",
        ),  # fmt: skip
        dashed=("total.*",),
    )


def tokens_per_second() -> common.Panel:
    tokens = common.series("tokens")
    return common.timeseries(
        9,
        "Tokens per second by kind, all ranks",
        [
            common.target(
                f"sum by (run_id, kind) (rate({tokens}[$__rate_interval]))",
                "{{kind}} {{run_id}}",
            )
        ],
        unit="short",
        description=common.describe("tokens", "Summed over the ranks of each run."),
        min_zero=True,
    )


def steps_by_rank() -> common.Panel:
    return common.timeseries(
        10,
        "Steps per rank",
        # A count, not a rate: shown as a plain number.
        [common.target(f"max by (run_id, rank) ({common.series('steps')})")],
        unit="short",
        description=common.describe("steps", "One line per rank: a flat line is a stopped rank."),
    )


def steps_behind() -> common.Panel:
    steps = common.series("steps")
    return common.timeseries(
        11,
        "Steps behind the leading rank",
        [common.target(f"max by (run_id) ({steps}) - on (run_id) group_right () {steps}")],
        unit="short",
        description=(
            "How many steps each rank is behind the rank that logged most, per run. A rank "
            "whose gap keeps growing has stopped or slowed down (MLXRankStalled)."
        ),
        min_zero=True,
    )


dashboard = common.dashboard(
    "MLX Ranks",
    uid="mlx-ranks",
    description="Multi-rank MLX runs (mlx_otel): stragglers, memory and totals across ranks.",
    rows=[
        [ranks_reporting(), straggler_now(), tokens_now(), finished_ranks()],
        [slowest_fastest(), straggler_ratio()],
        [memory_max_and_sum(), host_memory()],
        [tokens_per_second(), steps_by_rank()],
        [steps_behind()],
    ],
)
