"""What real training loops hand the monitor, thrown at every public method.

Hypothesis generates what loops produce by mistake or by design: NaN, ±inf,
None, text, bools, NumPy and MLX scalars, 0-d and 1-element arrays, huge and
negative numbers, steps that go backwards or repeat, empty, ragged and nested
rewards, per-completion lists of the wrong length or type (lengths,
truncated, correct, token counts) and group sizes that do not divide them,
unicode and very long custom names, thousands of distinct names, gradient
trees with leaves that are not arrays. For every input:

- nothing raises (the monitor is not strict);
- every rejected value is counted in ``mlx_otel_errors_total``, exactly as an
  independent rule of what a number is predicts;
- the scrape stays valid for prometheus-client's parser and, at the end, for
  ``promtool check metrics``;
- series stay under the caps (custom names, layer names).

One monitor serves the whole module; example counts are bounded. Locally each
run explores new examples; under ``CI=true`` Hypothesis loads its ``ci``
profile and derandomizes, so a CI result can be reproduced.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlx.core as mx
import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from mlx_otel.catalog import METRICS, Source, by_key
from mlx_otel.monitor import TrainingMonitor
from mlx_otel.pipeline.step_arguments import STEP_ARGUMENTS
from mlx_otel.records import TrainerReport
from tests import processes
from tests.servers import find_binary

MAX_CUSTOM = 16
MAX_LAYERS = 24
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
#: Error kinds counted on the caller's thread or at the next scrape (not the
#: worker's asynchronous non_finite count of statistics).
COUNTED = ("invalid_value", "negative_count", "custom_metric_cap")
NAMED = ("loss", "reward", "grad_norm", "learning_rate", "memory_allocated_mb", "step_time")
RESERVED = {*NAMED, "step", "thinking_tokens", "answer_tokens", "rewards"} | {
    a.name for a in STEP_ARGUMENTS
}
#: Catalogue keys a trainer integration reports (mlx_otel.trainers): plain and labelled.
TRAINER_KEYS = sorted(
    m.key for m in METRICS if m.source is Source.TRAINER and not m.labels
) + ["loss", "reward_mean", "learning_rate"]
LABELLED_KEYS = sorted(m.key for m in METRICS if m.source is Source.TRAINER and m.labels)
FLOAT_MAX_INT = 2**1024  # ints from here on overflow float()


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainingMonitor]:
    out = tmp_path_factory.mktemp("fuzz")
    config = {
        "exporter": {"port": 0, "max_custom_metrics": MAX_CUSTOM, "max_layer_series": MAX_LAYERS},
        "monitoring": {"output_dir": str(out / "outputs"), "generate_charts_every": 0},
    }
    monitor = TrainingMonitor(config, run_id="fuzz")
    try:
        yield monitor
    finally:
        monitor.cleanup()


# -- what a loop hands over ------------------------------------------------

finite_floats = st.floats(allow_nan=False, allow_infinity=False, width=64)
any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)
huge_ints = st.sampled_from([2**53 + 1, 2**63, 10**30, 10**400, -(10**400)])
ints = st.one_of(st.integers(-(2**40), 2**40), huge_ints)
scalar_arrays = st.one_of(
    any_float.map(np.float64),
    finite_floats.filter(lambda x: abs(x) < 3e38).map(np.float32),
    st.integers(-(2**31), 2**31).map(np.int64),
    any_float.map(lambda x: np.array(x)),  # 0-d
    any_float.map(lambda x: np.array([x])),  # 1 element
    any_float.map(lambda x: mx.array(x, dtype=mx.float32)),
    any_float.map(lambda x: mx.array([x], dtype=mx.float32)),
)
not_numbers = st.one_of(
    st.none(),
    st.text(max_size=8),
    st.binary(max_size=4),
    st.lists(finite_floats, max_size=3),
    st.just({"a": 1.0}),
    st.just(np.array([1.0, 2.0])),
    st.just(mx.array([1.0, 2.0])),
    st.just(object()),
)
values = st.one_of(any_float, ints, st.booleans(), scalar_arrays, not_numbers)
steps = st.one_of(st.integers(-5, 10**6), huge_ints, any_float, st.booleans(), scalar_arrays,
                  st.none(), st.text(max_size=3))  # fmt: skip
reward_items = st.one_of(any_float, st.integers(-100, 100), st.booleans())
rewards = st.one_of(
    st.lists(reward_items, max_size=40),
    st.lists(st.lists(finite_floats, min_size=2, max_size=2), max_size=5),  # nested, rectangular
    st.lists(st.lists(finite_floats, max_size=3), min_size=2, max_size=4),  # maybe ragged
    st.lists(st.one_of(finite_floats, st.lists(reward_items, max_size=3)), max_size=4),  # mixed
    st.lists(st.one_of(finite_floats, st.none(), st.text(max_size=2)), min_size=1, max_size=4),
    st.lists(finite_floats, max_size=8).map(tuple),
    st.lists(any_float, max_size=16).map(np.array),
    st.lists(finite_floats.filter(lambda x: abs(x) < 3e38), max_size=16).map(
        lambda xs: mx.array(xs, dtype=mx.float32)
    ),
    st.lists(st.just(10**400), min_size=1, max_size=2),
    any_float,
    st.none(),
    st.text(max_size=4),
)
custom_names = st.one_of(
    st.sampled_from(["kl", "entropy", "Entropy Bonus!", "kl-div", "ü", "policy/clip", "x" * 500]),
    st.text(min_size=0, max_size=80),
    st.text(alphabet="abc_", min_size=1, max_size=4),
).filter(lambda name: name not in RESERVED)


# -- an independent rule of what a number is ------------------------------


def as_number(value: Any) -> float | None:
    """The float a value stands for, or None when it is not a number."""
    if value is None or isinstance(value, (str, bytes, dict, list, tuple)):
        return None
    if isinstance(value, (bool, int)) and not isinstance(value, np.generic):
        return float(value) if abs(value) < FLOAT_MAX_INT else None
    if isinstance(value, float):
        return value
    if isinstance(value, (np.ndarray, np.generic, mx.array)):
        return float(value.item()) if value.size == 1 else None
    return None


def count_outcome(value: Any) -> str:
    """"ok", "invalid_value" or "negative_count" for a token count."""
    number = as_number(value)
    if number is None or not math.isfinite(number) or number != int(number) or number > 2**53:
        return "invalid_value"
    return "negative_count" if number < 0 else "ok"


def is_count_list(value: Any) -> bool:
    """Token counts given per completion (a list, or an array of other than one element)."""
    if isinstance(value, (list, tuple)):
        return True
    return isinstance(value, (np.ndarray, mx.array)) and value.ndim > 0 and value.size != 1


def entries(value: Any) -> list[Any]:
    """The entries of a per-completion list; a scalar is a list of one."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, (np.ndarray, mx.array)):
        return np.array(value).ravel().tolist()
    return [value]


def token_outcome(value: Any) -> str:
    """Like count_outcome, for one count or one count per completion (summed)."""
    if not is_count_list(value):
        return count_outcome(value)
    raw = entries(value)
    if all(isinstance(v, int) for v in raw):  # Python ints are summed exactly
        if raw and min(raw) < 0:
            return "negative_count"
        return "invalid_value" if sum(raw) > 2**53 else "ok"
    numbers = [as_number(v) for v in raw]
    if any(n is None or not math.isfinite(n) or n != int(n) for n in numbers):
        return "invalid_value"
    if any(n < 0 for n in numbers):  # type: ignore[operator]
        return "negative_count"
    return "invalid_value" if sum(numbers) > 2**53 else "ok"  # type: ignore[arg-type]


def reward_count(value: Any) -> int:
    """How many rewards a (nested) list, array or number holds."""
    if isinstance(value, (np.ndarray, mx.array)):
        return int(value.size)
    if isinstance(value, (list, tuple)):
        return sum(reward_count(v) for v in value)
    return 1


ABSENT: Any = object()


def completion_problems(
    *, rewards: Any = ABSENT, group_size: Any = ABSENT, lengths: Any = ABSENT,
    truncated: Any = ABSENT, correct: Any = ABSENT, thinking: Any = ABSENT, answer: Any = ABSENT,
) -> int:  # fmt: skip
    """Problems counted when a step's completions are checked (one per culprit).

    Lengths are numbers at or above zero, flags booleans; every list has as
    many entries as the rewards (when they are numbers), else as the first
    valid list; the group size is a positive int that divides that count.
    Token lists refused when counted (token_outcome) are not checked again.
    """
    tokens = [v for v in (thinking, answer) if v is not ABSENT]
    token_lists = [v for v in tokens if is_count_list(v) and token_outcome(v) == "ok"]
    if (group_size is ABSENT or group_size is None) and lengths is ABSENT and (
        truncated is ABSENT and correct is ABSENT and not token_lists
    ):
        return 0  # nothing to check: no completions
    problems = 0
    sizes = []
    for value, flags in ((lengths, False), (truncated, True), (correct, True)):
        if value is ABSENT:
            continue
        items = entries(value)
        if flags:
            valid = all(isinstance(v, (bool, np.bool_)) for v in items)
        else:
            numbers = [as_number(v) for v in items]
            valid = all(n is not None and math.isfinite(n) and n >= 0 for n in numbers)
        if valid:
            sizes.append(len(items))
        else:
            problems += 1
    sizes += [len(entries(v)) for v in token_lists]
    if rewards is not ABSENT and not rewards_rejected(rewards):
        sizes.insert(0, reward_count(rewards))
    reference = sizes[0] if sizes else None
    problems += sum(size != reference for size in sizes)
    if group_size is not ABSENT and group_size is not None:
        whole = isinstance(group_size, (int, np.integer)) and not isinstance(group_size, bool)
        if not whole or group_size < 1 or (reference is not None and reference % group_size):
            problems += 1
    return problems


def step_rejected(value: Any) -> bool:
    number = as_number(value)
    return number is None or not math.isfinite(number) or abs(number) > 2**53


def rewards_rejected(value: Any) -> bool:
    """Rewards are numbers: a number, an array, or a (nested, maybe ragged) list of them."""
    if isinstance(value, (np.ndarray, mx.array)):
        return False
    if isinstance(value, (list, tuple)):
        return any(rewards_rejected(v) for v in value)
    return as_number(value) is None


def sanitised(name: str) -> str:
    return re.sub(r"[^a-zA-Z0-9_]+", "_", name).strip("_").lower()[:64]


def counted(monitor: TrainingMonitor) -> dict[str, int]:
    errors = monitor.error_counts()
    return {kind: errors.get(kind, 0) for kind in COUNTED}


def scrape_checked(monitor: TrainingMonitor) -> dict[str, list[Any]]:
    """Scrape (which also folds buffered samples) and parse; samples by family."""
    text = monitor.telemetry.exposition()
    families = {f.name: f.samples for f in text_string_to_metric_families(text)}
    custom = [s for s in families.get("mlx_train_custom", [])]
    assert len(custom) <= MAX_CUSTOM, f"{len(custom)} custom series, cap {MAX_CUSTOM}"
    layers = families.get("mlx_train_layer_grad_norm", [])
    assert len(layers) <= MAX_LAYERS, f"{len(layers)} layer series, cap {MAX_LAYERS}"
    return families


# -- the properties --------------------------------------------------------


@FUZZ
@example(step="", named={"step_time": np.array(-math.inf, dtype=np.float32)},
         thinking=np.array([1, 2], dtype=np.float32), answer=np.array([1.0, 2.0]),
         samples=None, custom={})  # fmt: skip
@example(step=3, named={"step_time": -0.5}, thinking=1, answer=2, samples="absent", custom={})
@given(
    step=steps,
    named=st.dictionaries(st.sampled_from(NAMED), values, max_size=len(NAMED)),
    thinking=st.one_of(values, st.integers(-3, 10**6)),
    answer=st.one_of(values, st.integers(-3, 10**6)),
    samples=st.one_of(st.just("absent"), rewards),
    custom=st.dictionaries(custom_names, values, max_size=6),
)
def test_log_training_step_never_raises_and_counts_every_rejected_value(
    fuzzed: TrainingMonitor, step: Any, named: dict[str, Any], thinking: Any, answer: Any,
    samples: Any, custom: dict[str, Any],
) -> None:  # fmt: skip
    monitor = fuzzed
    before = counted(monitor)
    steps_before = monitor.steps_logged
    admitted = {key for key, stored in monitor.recorder.admission.custom_names.items() if stored}
    seen = set(monitor.recorder.admission.custom_names)

    expected = dict.fromkeys(COUNTED, 0)
    expected["invalid_value"] += sum(as_number(v) is None for v in named.values())
    step_time = as_number(named.get("step_time"))
    if step_time is not None and math.isfinite(step_time) and step_time < 0:
        # A duration cannot be negative. -inf, like NaN and +inf, is counted
        # as non_finite by the worker instead, not as invalid_value.
        expected["invalid_value"] += 1
    for value in (thinking, answer):
        outcome = token_outcome(value)
        if outcome != "ok":
            expected[outcome] += 1
    if step_rejected(step):
        expected["invalid_value"] += 1
    kwargs: dict[str, Any] = {**named, "thinking_tokens": thinking, "answer_tokens": answer}
    if not (isinstance(samples, str) and samples == "absent"):
        kwargs["rewards"] = samples
        expected["invalid_value"] += rewards_rejected(samples)
    # Per-completion token lists are checked against the rewards at the scrape below.
    expected["invalid_value"] += completion_problems(
        rewards=kwargs.get("rewards", ABSENT), thinking=thinking, answer=answer
    )
    for name, value in custom.items():
        if name not in seen:
            seen.add(name)
            if not sanitised(name):
                expected["invalid_value"] += 1  # a name with nothing left to export
                continue
            if len(admitted) >= MAX_CUSTOM:
                expected["custom_metric_cap"] += 1  # counted once per name
                continue
            admitted.add(name)
        if name in admitted and as_number(value) is None:
            expected["invalid_value"] += 1
    kwargs.update(custom)

    monitor.log_training_step(step, **kwargs)
    scrape_checked(monitor)  # folds the rewards buffered by this call

    after = counted(monitor)
    assert {k: after[k] - before[k] for k in COUNTED} == expected, kwargs
    assert monitor.steps_logged == steps_before + 1


count_items = st.one_of(st.integers(-3, 10**6), finite_floats, st.booleans())
flag_lists = st.one_of(
    st.lists(st.booleans(), max_size=10),
    st.lists(st.booleans(), max_size=10).map(lambda xs: np.array(xs, dtype=bool)),
    st.lists(st.one_of(st.booleans(), st.integers(0, 1), st.none()), max_size=6),
)
absent = st.just(ABSENT)


@FUZZ
@example(n=4, group_size=3, lengths=[1, 2, 3, 4], truncated=[True] * 4, correct=ABSENT,
         thinking=[1, 0, 2, 0], answer=[0, 0, 0], entropy=math.nan, kl=ABSENT,
         validation_reward="x")  # fmt: skip
@given(
    n=st.integers(0, 9),
    group_size=st.one_of(absent, st.integers(-1, 10), values),
    lengths=st.one_of(absent, st.lists(count_items, max_size=10), values),
    truncated=st.one_of(absent, flag_lists, values),
    correct=st.one_of(absent, flag_lists, values),
    thinking=st.one_of(absent, st.lists(st.integers(-2, 50), max_size=10), values),
    answer=st.one_of(absent, st.lists(st.integers(-2, 50), max_size=10), values),
    entropy=st.one_of(absent, values),
    kl=st.one_of(absent, values),
    validation_reward=st.one_of(absent, values),
)
def test_rl_keywords_never_raise_and_count_every_rejected_value(
    fuzzed: TrainingMonitor, n: int, group_size: Any, lengths: Any, truncated: Any,
    correct: Any, thinking: Any, answer: Any, entropy: Any, kl: Any, validation_reward: Any,
) -> None:  # fmt: skip
    """A GRPO loop's per-completion lists and scalars, junk included."""
    monitor = fuzzed
    before = counted(monitor)
    steps_before = monitor.steps_logged
    rewards = [float(i % 3) / 2 for i in range(n)]
    given_values = dict(group_size=group_size, completion_lengths=lengths, truncated=truncated,
                        correct=correct, thinking_tokens=thinking, answer_tokens=answer,
                        entropy=entropy, kl=kl, validation_reward=validation_reward)  # fmt: skip
    kwargs = {k: v for k, v in given_values.items() if v is not ABSENT}
    expected = dict.fromkeys(COUNTED, 0)
    for value in (kl, validation_reward):
        expected["invalid_value"] += value is not ABSENT and as_number(value) is None
    if entropy is not ABSENT:
        number = as_number(entropy)
        expected["invalid_value"] += number is None or math.isnan(number)
    for value in (thinking, answer):
        outcome = token_outcome(value) if value is not ABSENT else "ok"
        if outcome != "ok":
            expected[outcome] += 1
    expected["invalid_value"] += group_size is None  # None given is not "not given"
    expected["invalid_value"] += completion_problems(
        rewards=rewards, group_size=group_size, lengths=lengths, truncated=truncated,
        correct=correct, thinking=thinking, answer=answer,
    )  # fmt: skip

    monitor.log_training_step(7, rewards=rewards, **kwargs)
    families = scrape_checked(monitor)

    after = counted(monitor)
    assert {k: after[k] - before[k] for k in COUNTED} == expected, kwargs
    assert monitor.steps_logged == steps_before + 1
    ratios = [s.value for s in families.get("mlx_train_zero_std_groups_ratio", [])]
    assert all(0 <= r <= 1 for r in ratios) and sum(ratios) <= 1 + 1e-12


@FUZZ
@given(
    step=st.integers(0, 10**6),
    plain=st.dictionaries(st.sampled_from(TRAINER_KEYS), values, max_size=8),
    labelled=st.dictionaries(
        st.sampled_from(LABELLED_KEYS),
        st.dictionaries(st.text(max_size=80), values, max_size=4),
        max_size=3,
    ),
)
def test_trainer_reports_count_every_rejected_value_and_cap_labelled_series(
    fuzzed: TrainingMonitor, step: int, plain: dict[str, Any], labelled: dict[str, Any]
) -> None:
    """What the mlx-lm/mlx-lm-lora callbacks hand over, junk included."""
    monitor = fuzzed
    before = counted(monitor)
    steps_before = monitor.steps_logged
    known = {key: dict(labels) for key, labels in monitor.recorder.admission.labels.items()}
    expected = dict.fromkeys(COUNTED, 0)
    expected["invalid_value"] += sum(as_number(v) is None for v in plain.values())
    for key, series in labelled.items():
        labels = known.setdefault(key, {})
        for label, value in series.items():
            if label not in labels:
                refused = sum(map(bool, labels.values())) >= MAX_CUSTOM
                labels[label] = "" if refused or not label else label
                if not label:
                    expected["invalid_value"] += 1  # an empty label value, once
                else:
                    expected["custom_metric_cap"] += refused  # counted once per label value
            if labels[label] and as_number(value) is None:
                expected["invalid_value"] += 1
    monitor.record_report(TrainerReport(step, values=plain, labelled=labelled))
    families = scrape_checked(monitor)
    after = counted(monitor)
    assert {k: after[k] - before[k] for k in COUNTED} == expected, (plain, labelled)
    assert monitor.steps_logged == steps_before + 1
    for key in LABELLED_KEYS:
        served = families.get(by_key(key).prometheus_name, [])
        assert len(served) <= MAX_CUSTOM, f"{len(served)} series of {key}, cap {MAX_CUSTOM}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tree=st.recursive(
        st.one_of(
            st.lists(any_float, min_size=1, max_size=4).map(lambda xs: mx.array(xs)),
            st.none(), st.text(max_size=3), finite_floats, st.integers(), st.booleans(),
            st.just(np.ones(3)),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(min_size=1, max_size=12), children, max_size=4),
        ),
        max_leaves=30,
    ),
    step=st.integers(0, 10**6),
)
def test_log_gradients_takes_any_tree_and_keeps_layer_series_capped(
    fuzzed: TrainingMonitor, tree: Any, step: int
) -> None:
    norms = fuzzed.log_gradients(step, tree)
    if norms is not None:
        assert len(norms.per_layer) <= MAX_LAYERS
    scrape_checked(fuzzed)


def test_thousands_of_layer_names_stay_under_the_layer_cap(fuzzed: TrainingMonitor) -> None:
    tree = {f"layers.{i}.ü{'x' * (i % 50)}": {"weight": mx.ones((2,))} for i in range(3000)}
    norms = fuzzed.log_gradients(0, tree)
    assert norms is not None and norms.grouped
    assert norms.layer_count == 3000 and len(norms.per_layer) <= MAX_LAYERS
    assert math.isclose(norms.global_norm, math.sqrt(3000 * 2), rel_tol=1e-5)
    scrape_checked(fuzzed)


def test_thousands_of_custom_names_stay_under_the_custom_cap(fuzzed: TrainingMonitor) -> None:
    before = counted(fuzzed)["custom_metric_cap"]
    new = [f"custom_name_{i}_{'é' * (i % 7)}" for i in range(2000)]
    fresh = [n for n in new if n not in fuzzed.recorder.admission.custom_names]
    for start in range(0, len(new), 100):
        fuzzed.log_training_step(10, **{n: 1.0 for n in new[start : start + 100]})
    families = scrape_checked(fuzzed)
    assert 0 < len(families["mlx_train_custom"]) <= MAX_CUSTOM
    admitted_now = sum(1 for n in fresh if fuzzed.recorder.admission.custom_names.get(n))
    assert counted(fuzzed)["custom_metric_cap"] - before == len(fresh) - admitted_now


def test_thousands_of_reward_functions_stay_under_the_series_cap(fuzzed: TrainingMonitor) -> None:
    """A GRPO run with a reward function per prompt must not flood Prometheus."""
    metric = by_key("reward_function_mean")
    before = counted(fuzzed)["custom_metric_cap"]
    names = [f"fn_{i}" for i in range(500)]
    seen = dict(fuzzed.recorder.admission.labels.get(metric.key, {}))
    fresh = [n for n in names if n not in seen]
    for start in range(0, len(names), 50):
        series = {n: 0.5 for n in names[start : start + 50]}
        fuzzed.record_report(TrainerReport(11, labelled={metric.key: series}))
    served = scrape_checked(fuzzed)[metric.prometheus_name]
    assert len(served) <= MAX_CUSTOM, f"{len(served)} series of {metric.key}, cap {MAX_CUSTOM}"
    labels = fuzzed.recorder.admission.labels[metric.key]
    admitted = [n for n in fresh if labels.get(n)]
    assert {s.labels["reward_fn"] for s in served} >= set(admitted)
    assert sum(map(bool, labels.values())) == MAX_CUSTOM  # the cap is reached, not passed
    assert counted(fuzzed)["custom_metric_cap"] - before == len(fresh) - len(admitted) > 0


@FUZZ
@given(
    step=st.one_of(st.integers(-5, 10**6), any_float, st.none()),
    rows=st.lists(st.one_of(st.text(max_size=30), st.none(), st.integers()), max_size=5),
    rewards=st.one_of(st.lists(any_float, max_size=5), st.none(), st.text(max_size=3)),
)
def test_samples_memory_health_and_charts_never_raise(
    fuzzed: TrainingMonitor, step: Any, rows: list[Any], rewards: Any
) -> None:
    steps_before = fuzzed.steps_logged
    fuzzed.log_samples(step, rows, rows, rows, rewards)
    fuzzed.log_gradients(step, {"w": mx.ones((2,))})
    healthy, message = fuzzed.check_memory_health()
    assert isinstance(healthy, bool) and message
    # Samples, gradients and health checks are not training steps: none is counted as one.
    assert fuzzed.steps_logged == steps_before


@pytest.mark.integration
def test_the_final_scrape_passes_promtool_and_exports_still_write(
    fuzzed: TrainingMonitor, tmp_path: Path
) -> None:
    fuzzed.log_training_step(10**6 + 1, loss=float("nan"), reward=float("inf"),
                             rewards=[float("-inf"), 0.5])  # fmt: skip
    text = fuzzed.telemetry.exposition()
    result = processes.run([find_binary("promtool"), "check", "metrics"], input=text,
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert fuzzed.flush(60)
    written = fuzzed.export_all()
    assert written["training_metrics_csv"].stat().st_size > 0
    assert written["monitoring_summary"].is_file()
    # (A chart may fail on values near the float range; that is counted, not raised.)


def test_the_oracle_agrees_with_plain_cases() -> None:
    """The rule the properties use is itself right on cases a reader can check."""
    assert as_number(np.float32(0.5)) == 0.5 and as_number(True) == 1.0
    assert as_number(mx.array([2.0])) == 2.0 and as_number(np.array(3.0)) == 3.0
    assert as_number(None) is None and as_number("1") is None and as_number(10**400) is None
    assert as_number(np.array([1.0, 2.0])) is None and as_number([1.0]) is None
    assert count_outcome(-1) == "negative_count" and count_outcome(2.5) == "invalid_value"
    assert not rewards_rejected([[1.0, 2.0], [3.0]]) and not rewards_rejected([[1.0], [2.0]])
    assert rewards_rejected([[1.0], ["x"]])
    assert rewards_rejected(["a"]) and rewards_rejected([None]) and not rewards_rejected([])
    assert rewards_rejected([10**400]) and not rewards_rejected(0.5)
    assert operator.index(np.int64(3)) == 3
