"""MemoryProfiler and MemoryMonitor against real MLX allocations."""

from __future__ import annotations

import gc
import math
from collections.abc import Iterator

import mlx.core as mx
import psutil
import pytest

from mlx_otel.exporter.mlx_memory import (
    OTHER_BLOCK,
    MemoryMonitor,
    MemoryProfiler,
    MemorySnapshot,
    read_system_memory,
)
from mlx_otel.numbers.leak import judge_leak
from mlx_otel.numbers.memory_figures import judge_health

MB = 1 << 20


def allocate_mb(mb: float, value: float = 1.0) -> mx.array:
    """An evaluated float32 array of ``mb`` MiB (so it counts as active memory)."""
    array = mx.full((int(mb * MB) // 4,), value, dtype=mx.float32)
    mx.eval(array)
    return array


@pytest.fixture(autouse=True)
def clean_mlx_memory() -> Iterator[None]:
    # MLX's counters are process-wide: start every test from an empty cache.
    gc.collect()
    mx.clear_cache()
    mx.reset_peak_memory()
    yield
    gc.collect()
    mx.clear_cache()


# -- snapshots ----------------------------------------------------------------


def test_snapshot_reports_mlx_and_system_memory() -> None:
    profiler = MemoryProfiler()
    held = allocate_mb(4)
    snapshot = profiler.take_snapshot(step=7)
    assert snapshot.step == 7
    assert snapshot.mlx_allocated_mb == snapshot.mlx_active_mb >= 4.0
    assert snapshot.mlx_active_bytes == mx.get_active_memory()
    assert snapshot.mlx_peak_mb >= 4.0
    assert snapshot.mlx_limit_mb == mx.get_memory_limit() / MB
    assert snapshot.process_rss_mb > 0
    assert 0 < snapshot.system_available_mb <= snapshot.system_total_mb
    assert snapshot.system_total_bytes == psutil.virtual_memory().total
    assert profiler.latest is snapshot
    del held


def test_snapshot_is_frozen_and_history_is_bounded() -> None:
    profiler = MemoryProfiler(leak_detection_window=5, history_size=5)
    for step in range(12):
        profiler.take_snapshot(step, include_system=False)
    history = profiler.snapshots()
    assert [s.step for s in history] == [7, 8, 9, 10, 11]
    assert math.isnan(history[-1].process_rss_mb)
    with pytest.raises(AttributeError):
        history[-1].step = 3  # type: ignore[misc]


def test_psutil_failure_gives_nan_not_an_exception(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise psutil.AccessDenied()

    monkeypatch.setattr(psutil, "virtual_memory", broken)
    snapshot = MemoryProfiler().take_snapshot(step=1)
    assert math.isnan(snapshot.system_available_mb)
    assert math.isnan(snapshot.system_total_mb)
    assert snapshot.process_rss_mb > 0  # the other reading still works
    assert math.isfinite(snapshot.mlx_allocated_mb)


def test_read_system_memory_matches_psutil() -> None:
    system = read_system_memory()
    assert system.system_total_bytes == psutil.virtual_memory().total
    assert system.process_rss_mb > 0


def test_record_step_makes_the_peak_per_step() -> None:
    profiler = MemoryProfiler()
    temporary = allocate_mb(16)
    del temporary
    first = profiler.record_step(0)
    second = profiler.record_step(1)
    assert first.mlx_peak_mb >= 16.0
    assert second.mlx_peak_mb < 1.0


def test_block_inside_a_step_does_not_hide_the_step_peak() -> None:
    profiler = MemoryProfiler()
    temporary = allocate_mb(16)
    del temporary
    with MemoryMonitor(profiler, "small"):
        small = allocate_mb(1)
    snapshot = profiler.record_step(0)
    assert snapshot.mlx_peak_mb >= 16.0
    assert profiler.block_stats()["small"].last_peak_mb < 16.0
    del small


def test_invalid_arguments_are_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="-1"):
        MemoryProfiler(alert_threshold_mb=-1)
    with pytest.raises(ValueError, match="1.5"):
        MemoryProfiler(limit_warning_fraction=1.5)
    with pytest.raises(ValueError, match="''"):
        MemoryMonitor(MemoryProfiler(), "")


# -- health -------------------------------------------------------------------


def test_tiny_threshold_is_unhealthy_and_message_gives_figures() -> None:
    profiler = MemoryProfiler(alert_threshold_mb=0.001)
    held = allocate_mb(2)
    healthy, message = profiler.check_memory_health()
    assert not healthy
    assert "alert threshold of 0.0 MB" in message
    active = mx.get_active_memory() / MB
    assert f"active {active:.1f} MB" in message
    assert "aggressive_cleanup()" in message and "mx.set_memory_limit" in message
    del held


def test_huge_threshold_is_healthy_with_figures() -> None:
    profiler = MemoryProfiler(alert_threshold_mb=10_000_000)
    held = allocate_mb(2)
    healthy, message = profiler.check_memory_health()
    assert healthy
    assert message.startswith("Memory healthy")
    assert "alert threshold 10000000.0 MB" in message
    assert f"limit {mx.get_memory_limit() / MB:.1f} MB" in message
    del held


def test_close_to_the_mlx_limit_is_unhealthy() -> None:
    profiler = MemoryProfiler(alert_threshold_mb=10_000_000, limit_warning_fraction=1e-9)
    held = allocate_mb(2)
    healthy, message = profiler.check_memory_health()
    assert not healthy
    assert "of the MLX memory limit" in message
    del held


# -- cleanup ------------------------------------------------------------------


def test_aggressive_cleanup_frees_the_cache() -> None:
    profiler = MemoryProfiler()
    freed_arrays = [allocate_mb(4, value=i) for i in range(4)]
    del freed_arrays
    assert mx.get_cache_memory() >= 16 * MB
    freed = profiler.aggressive_cleanup()
    assert freed >= 16.0
    assert mx.get_cache_memory() == 0
    assert profiler.last_cleanup_freed_mb == freed


def test_aggressive_cleanup_collects_garbage_cycles_holding_arrays() -> None:
    class Node:
        def __init__(self) -> None:
            self.array = allocate_mb(8)
            self.me = self

    gc.disable()
    try:
        Node()  # only a reference cycle keeps it alive now
        assert mx.get_active_memory() >= 8 * MB
        freed = MemoryProfiler().aggressive_cleanup()
    finally:
        gc.enable()
    assert freed >= 8.0
    assert mx.get_active_memory() < 8 * MB


# -- leaks --------------------------------------------------------------------


def test_kept_references_are_reported_as_a_leak_of_the_right_slope() -> None:
    profiler = MemoryProfiler(leak_detection_window=30)
    kept = []
    for step in range(30):
        work = allocate_mb(3, value=step)
        kept.append(allocate_mb(2, value=step))  # the leak: a reference per step
        del work
        profiler.record_step(step)
    leaking, description = profiler.detect_memory_leak()
    report = profiler.leak_report()
    assert leaking, description
    assert report.detected
    assert report.slope_mb_per_step == pytest.approx(2.0, abs=0.05)
    assert report.r_squared > 0.99
    assert report.window_steps == 30
    assert report.slope_mb_per_second > 0
    assert report.slope_bytes_per_step == pytest.approx(2.0 * MB, rel=0.03)
    assert "Memory leak suspected" in description and "2.0" in description


def test_a_leak_is_seen_through_per_step_noise() -> None:
    profiler = MemoryProfiler(leak_detection_window=40)
    kept = []
    for step in range(40):
        kept.append(allocate_mb(2, value=step))
        # Half the snapshots are taken while an 8 MB temporary is still alive.
        temporary = allocate_mb(8) if step % 2 else None
        profiler.record_step(step)
        del temporary
    assert profiler.leak_report().detected
    assert profiler.leak_report().slope_mb_per_step == pytest.approx(2.0, abs=0.2)


def test_same_work_with_references_dropped_is_no_leak() -> None:
    profiler = MemoryProfiler(leak_detection_window=30)
    for step in range(30):
        work = allocate_mb(2, value=step)
        float(mx.sum(work))
        del work
        profiler.record_step(step)
    leaking, description = profiler.detect_memory_leak()
    assert not leaking, description
    assert abs(profiler.leak_report().slope_mb_per_step) < 0.05


def test_sawtooth_of_memory_freed_each_cycle_is_no_leak() -> None:
    profiler = MemoryProfiler(leak_detection_window=50)
    growing: list[mx.array] = []
    for step in range(50):
        # Like a KV cache during generation: grows for 5 steps, then released.
        growing.append(allocate_mb(4, value=step))
        if len(growing) == 5:
            growing.clear()
        profiler.record_step(step)
    leaking, description = profiler.detect_memory_leak()
    assert not leaking, description


def test_snapshots_taken_at_alternating_phases_are_no_leak() -> None:
    profiler = MemoryProfiler(leak_detection_window=40)
    for step in range(40):
        temporary = allocate_mb(16, value=step)
        if step % 2:
            profiler.record_step(step)
        del temporary
        if not step % 2:
            profiler.record_step(step)
    leaking, description = profiler.detect_memory_leak()
    assert not leaking, description


def test_cache_growing_and_being_reused_is_no_leak() -> None:
    profiler = MemoryProfiler(leak_detection_window=40)
    cache_before = mx.get_cache_memory()
    for step in range(40):
        # New sizes at first (the cache grows), the same sizes later (reused).
        temporary = allocate_mb(1 + step % 20, value=step)
        del temporary
        profiler.record_step(step)
    assert mx.get_cache_memory() - cache_before >= 20 * MB
    snapshots = profiler.snapshots()
    assert snapshots[-1].mlx_cache_mb > snapshots[0].mlx_cache_mb
    leaking, description = profiler.detect_memory_leak()
    assert not leaking, description


@pytest.mark.parametrize("jump_step", [5, 15, 25, 35, 45])
def test_one_time_jump_from_a_new_batch_shape_is_no_leak(jump_step: int) -> None:
    profiler = MemoryProfiler(leak_detection_window=50)
    model = allocate_mb(8)
    held = []
    for step in range(50):
        size = 2 if step < jump_step else 32  # a longer sequence appears once
        activations = allocate_mb(size, value=step)
        if step == jump_step:
            held.append(allocate_mb(64))  # and its compiled buffers stay allocated
        del activations
        profiler.record_step(step)
    report = profiler.leak_report()
    assert not report.detected, report.description
    assert report.slope_mb_per_step > 0  # the jump is visible in the raw slope
    del model


def test_not_enough_snapshots_is_no_verdict() -> None:
    profiler = MemoryProfiler(min_leak_snapshots=10)
    kept = [allocate_mb(2)]
    for step in range(5):
        kept.append(allocate_mb(2, value=step))
        profiler.record_step(step)
    report = profiler.leak_report()
    assert not report.detected
    assert "5 of 10" in report.description
    assert math.isnan(report.slope_mb_per_step)


def test_snapshots_without_steps_are_judged_in_order() -> None:
    profiler = MemoryProfiler(leak_detection_window=20)
    kept = []
    for _ in range(20):
        kept.append(allocate_mb(1))
        profiler.take_snapshot()
    report = profiler.leak_report()
    assert report.detected
    assert report.slope_mb_per_step == pytest.approx(1.0, abs=0.05)
    assert "MB/snapshot" in report.description


def test_leak_window_only_judges_the_latest_snapshots() -> None:
    profiler = MemoryProfiler(leak_detection_window=20)
    kept = []
    for step in range(20):
        kept.append(allocate_mb(2, value=step))
        profiler.record_step(step)
    assert profiler.leak_report().detected
    for step in range(20, 40):  # the leak is fixed; the window moves past it
        profiler.record_step(step)
    assert not profiler.leak_report().detected


# -- blocks -------------------------------------------------------------------


def test_memory_monitor_records_delta_and_peak_of_the_block() -> None:
    profiler = MemoryProfiler()
    with MemoryMonitor(profiler, "forward") as monitor:
        kept = allocate_mb(6)
        temporary = allocate_mb(10)
        del temporary
    stats = profiler.block_stats()["forward"]
    assert stats.last_delta_mb == pytest.approx(6.0, abs=0.05)
    assert monitor.delta_mb == stats.last_delta_mb
    assert stats.last_peak_mb >= 16.0
    assert stats.calls == 1
    assert stats.last_delta_bytes == pytest.approx(6 * MB, abs=0.05 * MB)
    with MemoryMonitor(profiler, "forward"):
        del kept
    stats = profiler.block_stats()["forward"]
    assert stats.calls == 2
    assert stats.last_delta_mb == pytest.approx(-6.0, abs=0.05)
    assert stats.max_peak_mb >= 16.0


def test_nested_blocks_keep_the_outer_peak() -> None:
    profiler = MemoryProfiler()
    with MemoryMonitor(profiler, "outer"):
        temporary = allocate_mb(12)
        del temporary
        with MemoryMonitor(profiler, "inner"):
            small = allocate_mb(1)
    stats = profiler.block_stats()
    assert stats["outer"].last_peak_mb >= 12.0
    assert stats["inner"].last_peak_mb < 12.0
    assert stats["outer"].last_delta_mb == pytest.approx(1.0, abs=0.05)
    del small


def test_block_names_beyond_the_cap_fold_into_other() -> None:
    profiler = MemoryProfiler(max_blocks=4)
    for i in range(10):
        with MemoryMonitor(profiler, f"block_{i}"):
            pass
    stats = profiler.block_stats()
    assert len(stats) == 4
    assert set(stats) == {"block_0", "block_1", "block_2", OTHER_BLOCK}
    assert stats[OTHER_BLOCK].calls == 7
    assert profiler.folded_block_calls == 7
    with MemoryMonitor(profiler, "block_1"):  # known names keep their series
        pass
    assert profiler.block_stats()["block_1"].calls == 2


def test_exceptions_inside_a_block_propagate_and_are_still_recorded() -> None:
    profiler = MemoryProfiler()
    error = KeyError("missing batch")
    with pytest.raises(KeyError) as raised, MemoryMonitor(profiler, "failing"):
        kept = allocate_mb(3)
        raise error
    assert raised.value is error
    assert profiler.block_stats()["failing"].last_delta_mb == pytest.approx(3.0, abs=0.05)
    del kept


def test_snapshot_values_are_plain_floats() -> None:
    snapshot = MemoryProfiler().take_snapshot(step=0)
    assert isinstance(snapshot, MemorySnapshot)
    for value in (snapshot.mlx_allocated_mb, snapshot.mlx_cache_mb, snapshot.mlx_peak_mb):
        assert type(value) is float


@pytest.mark.parametrize("jump_step", [13, 25, 37])
def test_sub_window_rule_alone_rejects_a_jump(jump_step: int) -> None:
    # With the fit test switched off, the rise-in-every-sub-window rule still holds.
    profiler = MemoryProfiler(leak_detection_window=50, min_leak_r_squared=0.0)
    held = []
    for step in range(50):
        if step == jump_step:
            held.append(allocate_mb(64))
        profiler.record_step(step)
    report = profiler.leak_report()
    assert not report.detected, report.description
    assert report.rising_subwindows < report.subwindows - 1


def test_short_window_still_detects_a_leak() -> None:
    profiler = MemoryProfiler(leak_detection_window=10)
    kept = []
    for step in range(10):
        kept.append(allocate_mb(1, value=step))
        profiler.record_step(step)
    report = profiler.leak_report()
    assert report.detected, report.description
    assert report.subwindows == 4


def test_read_peak_and_reset_peak_see_through_block_resets() -> None:
    # For callers that read the step's peak themselves (reset_peak_each_step=False).
    profiler = MemoryProfiler(reset_peak_each_step=False)
    temporary = allocate_mb(16)
    del temporary
    with MemoryMonitor(profiler, "block"):  # resets MLX's own counter
        pass
    assert mx.get_peak_memory() < 16 * MB
    assert profiler.read_peak_bytes() >= 16 * MB
    profiler.reset_peak()
    assert profiler.read_peak_bytes() < 16 * MB


# -- the judging alone, on figures (mlx_otel.numbers) ------------------------------


def _window(active_mb: list[float]) -> list[MemorySnapshot]:
    return [MemorySnapshot(step, float(step), mb, 0.0, mb, 0.0) for step, mb in enumerate(active_mb)]


def test_judge_leak_on_plain_figures_tells_growth_from_a_jump() -> None:
    criteria = {"min_snapshots": 10, "min_slope_mb_per_step": 0.5, "min_r_squared": 0.8}
    growing = judge_leak(_window([100.0 + 2 * i for i in range(20)]), **criteria)
    assert growing.detected and growing.slope_mb_per_step == pytest.approx(2.0)
    assert growing.r_squared == pytest.approx(1.0) and growing.window_steps == 20
    assert growing.slope_bytes_per_step == pytest.approx(2.0 * MB)
    jump = judge_leak(_window([100.0] * 10 + [300.0] * 10), **criteria)
    assert not jump.detected and "fits poorly" in jump.description
    flat = judge_leak(_window([100.0] * 20), **criteria)
    assert not flat.detected and flat.slope_mb_per_step == 0.0
    short = judge_leak(_window([1.0, 2.0]), **criteria)
    assert not short.detected and math.isnan(short.slope_mb_per_step)


def test_judge_health_on_plain_figures() -> None:
    snapshot = MemorySnapshot(1, 0.0, mlx_allocated_mb=300.0, mlx_cache_mb=500.0,
                              mlx_peak_mb=400.0, mlx_limit_mb=1000.0)  # fmt: skip
    healthy, message = judge_health(snapshot, alert_threshold_mb=900.0, limit_warning_fraction=0.9)
    assert healthy and message.startswith("Memory healthy: MLX memory 800.0 MB")
    healthy, message = judge_health(snapshot, alert_threshold_mb=700.0, limit_warning_fraction=0.8)
    assert not healthy
    assert "above the alert threshold of 700.0 MB" in message
    assert "at 80.0% of the MLX memory limit" in message and "Most of it is cache." in message
