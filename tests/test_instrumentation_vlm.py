"""mlx-vlm's training monitored with no code change: its engine, its objectives, its keys.

mlx-vlm's own recipes (``train_dpo``, ``train_orpo``, ``train_vlm``) train
the tiny vision-language model of tests/tiny_vlm.py through mlx-vlm's real
engine, in process with :class:`MlxVlmCallback` (what each key becomes, read
from the monitor's exposition against the report mlx-vlm handed the
callback), instrumented in process (the zero-code path: a user's callback
still gets every report, the run's files are written once training and its
last validation are done), and as a plain script through ``mlx-otel run``
scraped by a real Prometheus. GRPO's report is made by mlx-vlm's own reward
and report functions (its generation needs a tokenizer and a processor).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx_otel import TrainingMonitor
from mlx_otel.instrumentation import INSTRUMENTORS, MlxVlmInstrumentor
from mlx_otel.trainers_vlm import MlxVlmCallback, vlm_report
from tests import processes
from tests.conftest import parse_exposition, sample
from tests.servers import REPO, PrometheusServer, ServerDied, free_port, wait_for
from tests.tiny_vlm import dpo_args, preference_rows, sft_rows, tiny_vlm

pytest.importorskip("mlx_vlm.trainer")

ITERS, REPORT = 4, 2
RUN_TIMEOUT = 420.0
#: Keys of mlx-vlm's reports that repeat another series and are not served.
LEFT_OUT = ("active_memory", "cache_memory", "progress", "train_time", "elapsed_time")


class Recorder:
    """A user's callback: what mlx-vlm reported, as it reported it."""

    def __init__(self) -> None:
        self.train: list[dict[str, Any]] = []
        self.val: list[dict[str, Any]] = []

    def on_train_loss_report(self, info: dict[str, Any]) -> None:
        self.train.append(info)

    def on_val_loss_report(self, info: dict[str, Any]) -> None:
        self.val.append(info)


def _train(kind: str, folder: Path, callback: Any, **settings: Any) -> None:
    """One of mlx-vlm's recipes on the tiny VLM (dpo, orpo, sft)."""
    import mlx.optimizers as optim
    from mlx_vlm.trainer.vlm.dpo.trainer import train_dpo
    from mlx_vlm.trainer.vlm.orpo.runtime import train_orpo
    from mlx_vlm.trainer.vlm.sft.runtime import train_vlm

    args = dpo_args(folder, kind=kind, iters=ITERS, report=REPORT, **settings)
    optimizer = optim.Adam(learning_rate=1e-2)
    if kind == "dpo":
        train_dpo(tiny_vlm(), tiny_vlm(), optimizer, preference_rows(8), preference_rows(4),
                  args, training_callback=callback)  # fmt: skip
    elif kind == "orpo":
        train_orpo(tiny_vlm(), optimizer, preference_rows(8), preference_rows(4), args,
                   training_callback=callback)  # fmt: skip
    else:
        train_vlm(tiny_vlm(), optimizer, sft_rows(8), sft_rows(4), args,
                  training_callback=callback)  # fmt: skip


class Run:
    """An in-process run with MlxVlmCallback: the user's reports, the served samples, the files."""

    def __init__(self, folder: Path, kind: str, **settings: Any) -> None:
        self.folder, self.recorder = folder, Recorder()
        monitor = TrainingMonitor(
            {"monitoring": {"output_dir": str(folder), "charts_timeout": 0.5}},
            run_id=f"vlm_{kind}", serve=False,
        )  # fmt: skip
        args = dpo_args(folder, kind=kind, **settings)
        config = MlxVlmInstrumentor().trainer_config({"args": args, "val_dataset": []})
        callback = MlxVlmCallback(config=config, monitor=monitor, wrapped_callback=self.recorder)
        _train(kind, folder, callback, **settings)
        self.samples = parse_exposition(monitor.telemetry.exposition())
        callback.close()
        monitor.cleanup()
        self.last = self.recorder.train[-1]
        self.last_val = self.recorder.val[-1]

    def value(self, series: str, /, **labels: str) -> float:
        return sample(self.samples, series, **labels)

    def custom(self) -> set[str]:
        return {dict(ls)["name"] for n, ls in self.samples if n == "mlx_train_custom"}

    def served(self, series: str) -> bool:
        return any(n == series for n, _ in self.samples)


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run]:
    root = tmp_path_factory.mktemp("vlm_runs")
    return {
        "dpo": Run(root / "dpo", "dpo"),
        "ipo": Run(root / "ipo", "dpo", loss_type="ipo"),
        "orpo": Run(root / "orpo", "orpo"),
        "sft": Run(root / "sft", "sft"),
    }


# -- fast: the instrumentor's contract --------------------------------------------------------
def test_mlx_vlm_is_an_entry_point_of_the_instrumentors() -> None:
    assert INSTRUMENTORS["mlx_vlm"] is MlxVlmInstrumentor


def test_instrument_wraps_the_engine_wherever_mlx_vlm_holds_it_and_uninstrument_restores() -> None:
    import mlx_vlm.trainer.common.engine as engine
    import mlx_vlm.trainer.runner as runner  # binds the engine's train at its import

    original = engine.train
    assert runner.train is original
    instrumentor = MlxVlmInstrumentor()
    instrumentor.instrument(monitor_config={"exporter": {"enabled": False}})
    try:
        assert engine.train is not original and engine.train.__wrapped__ is original
        assert runner.train is engine.train
    finally:
        instrumentor.uninstrument()
    assert engine.train is original and runner.train is original


def test_the_engine_configuration_says_when_there_is_no_validation(tmp_path: Path) -> None:
    args = dpo_args(tmp_path, steps_per_eval=2)
    config = MlxVlmInstrumentor().trainer_config({"args": args, "val_dataset": None})
    assert config["iters"] == 4 and config["steps_per_report"] == 2
    assert config["steps_per_eval"] is None and args.steps_per_eval == 2


def test_grpo_keys_made_by_mlx_vlm_map_onto_the_grpo_series(tmp_path: Path) -> None:
    from mlx_vlm.trainer.common.metrics import report_loss_metrics
    from mlx_vlm.trainer.vlm.grpo.rewards import calculate_rewards_and_advantages

    def digits(prompts: Any, completions: list[str], **_: Any) -> list[float]:
        return [sum(c.isdigit() for c in text) / len(text) for text in completions]

    _, metrics = calculate_rewards_and_advantages(
        [digits], ["p", "p", "q", "q"], ["a1", "22", "b", "3"], ["", "", "", ""], [0, 0, 1, 1]
    )
    values = {key: float(value) for key, value in metrics.items()}
    values.update(kl=0.01, kl_clip_ratio=0.0, clip_ratio=0.125, average_generated_tokens=2.0,
                  hit_max_tokens_ratio=0.25, weight=4)  # fmt: skip
    info = {"iteration": 2, **report_loss_metrics(values, "train"), "completions_per_second": 8.0}
    monitor = TrainingMonitor(
        {"monitoring": {"output_dir": str(tmp_path), "charts_timeout": 0.5}}, serve=False
    )
    MlxVlmCallback(monitor=monitor).on_train_loss_report(info)
    samples = parse_exposition(monitor.telemetry.exposition())
    monitor.cleanup()
    assert sample(samples, "mlx_train_reward_mean") == pytest.approx(values["reward_mean"])
    assert sample(samples, "mlx_train_reward_std") == pytest.approx(values["reward_std"])
    assert sample(samples, "mlx_train_grouped_reward_std") == pytest.approx(
        values["grouped_reward_std"]
    )
    assert sample(samples, "mlx_train_reward_function_mean", reward_fn="digits") == pytest.approx(
        values["reward_0_digits"]
    )
    assert sample(samples, "mlx_train_reward_function_coverage", reward_fn="digits") == 1.0
    assert sample(samples, "mlx_train_kl") == pytest.approx(0.01)
    assert sample(samples, "mlx_train_clip_ratio", bound="total") == 0.125
    assert sample(samples, "mlx_train_generated_tokens", stat="mean") == 2.0
    assert sample(samples, "mlx_train_hit_max_tokens_ratio") == 0.25
    assert sample(samples, "mlx_train_custom", name="completions_per_second") == 8.0


def test_logps_are_per_token_for_orpo_and_ipo_else_summed_sequence_scores() -> None:
    dpo = {"train_reward_accuracy": 1.0, "train_chosen_logps": -9.0}
    assert vlm_report(dpo) == {"train_accuracies": 1.0, "train_chosen_logits_mean": -9.0}
    assert vlm_report(dpo, per_token_logps=True)["train_policy_chosen_logps"] == -9.0
    orpo = {"train_preference_accuracy": 1.0, "train_rejected_logps": -2.0}
    assert vlm_report(orpo) == {"train_accuracies": 1.0, "train_policy_rejected_logps": -2.0}


def test_a_report_whose_validation_never_comes_is_recorded_all_the_same(tmp_path: Path) -> None:
    """The user's callback has each report at once; the monitor records it at the next call or
    at close when the validation the schedule promised does not come (a validation that fails)."""
    recorder = Recorder()
    monitor = TrainingMonitor(
        {"monitoring": {"output_dir": str(tmp_path), "charts_timeout": 0.5}}, serve=False
    )
    config = {"iters": ITERS, "steps_per_report": REPORT, "steps_per_eval": REPORT}
    callback = MlxVlmCallback(config=config, monitor=monitor, wrapped_callback=recorder)
    callback.on_train_loss_report({"iteration": REPORT, "train_loss": 2.0})
    assert len(recorder.train) == 1 and monitor.steps_logged == 0  # waits for its validation
    callback.on_train_loss_report({"iteration": ITERS, "train_loss": 1.0})
    assert monitor.steps_logged == 1
    callback.close()
    samples = parse_exposition(monitor.telemetry.exposition())
    monitor.cleanup()
    assert sample(samples, "mlx_train_step") == ITERS and sample(samples, "mlx_train_loss") == 1.0
    assert sample(samples, "mlx_train_steps_total") == 2


# -- real runs of mlx-vlm's engine, in process -------------------------------------------------
def test_dpo_serves_the_preference_series_mlx_vlm_reported(runs: dict[str, Run]) -> None:
    run = runs["dpo"]
    last, val = run.last, run.last_val
    assert run.value("mlx_train_step") == ITERS and run.value("mlx_train_steps_total") == 2
    assert run.value("mlx_train_loss") == pytest.approx(last["train_loss"])
    for choice in ("chosen", "rejected"):
        assert run.value("mlx_train_preference_reward", choice=choice) == pytest.approx(
            last[f"train_{choice}_reward"]
        )
        # DPO scores a response by its summed log-probability.
        assert run.value("mlx_train_logits_mean", choice=choice) == pytest.approx(
            last[f"train_{choice}_logps"]
        )
    assert not run.served("mlx_train_policy_logps")
    assert run.value("mlx_train_preference_accuracy") == last["train_reward_accuracy"]
    assert run.value("mlx_train_preference_margin") == pytest.approx(last["train_reward_margin"])
    assert run.value("mlx_train_validation_preference_accuracy") == val["val_reward_accuracy"]
    assert run.value("mlx_train_validation_preference_margin") == pytest.approx(
        val["val_reward_margin"]
    )
    assert run.value("mlx_train_validation_loss") == pytest.approx(val["val_loss"])
    assert run.value("mlx_train_validation_step") == ITERS == val["iteration"]
    assert run.value("mlx_train_validation_duration_seconds") == pytest.approx(val["val_time"])
    assert run.value("mlx_train_trainer_peak_memory_bytes") == pytest.approx(
        last["peak_memory"] * 1e9
    )
    assert run.value("mlx_train_tokens_per_second") == pytest.approx(last["tokens_per_second"])
    assert run.value("mlx_train_trained_tokens_total") == last["trained_tokens"] > 0
    assert run.value("mlx_train_iterations_per_second") == pytest.approx(
        last["iterations_per_second"]
    )
    assert run.value("mlx_train_learning_rate") == pytest.approx(last["learning_rate"])


def test_keys_without_a_series_are_custom_and_repeats_are_left_out(runs: dict[str, Run]) -> None:
    run = runs["dpo"]
    custom = run.custom()
    assert {"optimizer_step", "step_time", "data_time_per_step", "padding_fraction",
            "vision_tokens_per_second", "val_chosen_reward"} <= custom  # fmt: skip
    assert run.value("mlx_train_custom", name="vision_tokens_per_second") > 0  # images seen
    assert not custom & {*LEFT_OUT, "pairs_per_second", "val_pairs_per_second"}
    assert not [name for name in custom if name.startswith(("total_", "train_num_", "val_num_"))]
    # Well within exporter.max_custom_metrics: none refused.
    cap = [v for (n, ls), v in run.samples.items()
           if n == "mlx_otel_errors_total" and ("kind", "custom_metric_cap") in ls]  # fmt: skip
    assert sum(cap) == 0 and len(custom) <= 24


def test_orpo_and_ipo_log_probabilities_are_per_token(runs: dict[str, Run]) -> None:
    orpo, ipo = runs["orpo"], runs["ipo"]
    for run in (orpo, ipo):
        for choice in ("chosen", "rejected"):
            assert run.value("mlx_train_policy_logps", choice=choice) == pytest.approx(
                run.last[f"train_{choice}_logps"]
            )
        assert not run.served("mlx_train_logits_mean")
    assert orpo.value("mlx_train_preference_accuracy") == orpo.last["train_preference_accuracy"]
    # ORPO's odds margin is a log-odds ratio, not a reward margin.
    assert not orpo.served("mlx_train_preference_margin")
    assert orpo.value("mlx_train_custom", name="train_odds_margin") == pytest.approx(
        orpo.last["train_odds_margin"]
    )


def test_sft_serves_loss_speed_tokens_and_validation(runs: dict[str, Run]) -> None:
    run = runs["sft"]
    assert run.value("mlx_train_loss") == pytest.approx(run.last["train_loss"])
    assert run.value("mlx_train_trained_tokens_total") == run.last["trained_tokens"] > 0
    assert run.value("mlx_train_tokens_per_second") > 0
    assert run.value("mlx_train_validation_loss") == pytest.approx(run.last_val["val_loss"])
    assert run.value("mlx_train_custom", name="train_token_accuracy") == pytest.approx(
        run.last["train_token_accuracy"]
    )
    assert "train_perplexity" in run.custom()


def test_the_user_callback_gets_every_report_and_the_files_end_with_the_last_validation(
    runs: dict[str, Run],
) -> None:
    run = runs["dpo"]
    assert [r["iteration"] for r in run.recorder.train] == [REPORT, ITERS]
    assert [r["iteration"] for r in run.recorder.val] == [REPORT, ITERS]
    rows = json.loads((run.folder / "training_metrics.json").read_text())["steps"]
    assert [row["step"] for row in rows] == [REPORT, ITERS]
    assert rows[-1]["validation_loss"] == pytest.approx(run.last_val["val_loss"])
    # Each step with its validation's time, and the training iterations 3 and 4 in between.
    assert all(row["timing/evaluate"] > 0 for row in rows)
    assert rows[-1]["timing/train"] > 0


def test_instrumented_in_process_a_recipe_is_monitored_and_the_user_callback_chained(
    tmp_path: Path,
) -> None:
    recorder = Recorder()
    instrumentor = MlxVlmInstrumentor()
    instrumentor.instrument(
        monitor_config={"monitoring": {"output_dir": str(tmp_path / "out"), "charts_timeout": 0.5},
                        "exporter": {"enabled": False}},
        run_id="vlm_instrumented", linger=0,
    )  # fmt: skip
    try:
        _train("orpo", tmp_path, recorder)
    finally:
        instrumentor.uninstrument()
    assert [r["iteration"] for r in recorder.train] == [REPORT, ITERS]
    assert [r["iteration"] for r in recorder.val] == [REPORT, ITERS]
    rows = json.loads((tmp_path / "out" / "training_metrics.json").read_text())["steps"]
    assert [row["step"] for row in rows] == [REPORT, ITERS]
    assert rows[-1]["validation_loss"] > 0


# -- a plain script through `mlx-otel run`, scraped by Prometheus ------------------------------
_SCRIPT = """
from pathlib import Path

import mlx.optimizers as optim
from mlx_vlm.trainer.vlm.dpo.trainer import train_dpo
from tests.tiny_vlm import dpo_args, preference_rows, tiny_vlm

args = dpo_args(Path({folder!r}), iters={iters}, report={report})
train_dpo(tiny_vlm(), tiny_vlm(), optim.Adam(learning_rate=1e-2), preference_rows(8),
          preference_rows(4), args)
print("vlm dpo trained", flush=True)
"""


@pytest.fixture(scope="module")
def script_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    import os

    root = tmp_path_factory.mktemp("vlm_script")
    port = free_port()
    script = root / "train_vlm_dpo.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(folder=str(root), iters=ITERS, report=REPORT)))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_OTEL_", "WANDB_"))}
    env.update(PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1",
               MLX_OTEL_MONITORING__OUTPUT_DIR=str(root / "outputs"))  # fmt: skip
    command = [sys.executable, "-m", "mlx_otel", "run", "--metrics-port", str(port),
               "--run-id", "vlm_dpo_script", "--metrics-linger", "300",
               "--", "python", str(script)]  # fmt: skip
    with PrometheusServer(root / "prometheus", targets=[f"127.0.0.1:{port}"]) as prom:
        log = root / "run.log"
        with log.open("w") as out:
            process = processes.popen(command, cwd=root, env=env, stdout=out,
                                      stderr=subprocess.STDOUT)  # fmt: skip

        def ended() -> bool:
            if process.poll() is not None:
                raise ServerDied(f"the run ended before Prometheus had its last report:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip
            expr = f'mlx_train_validation_step{{run_id="vlm_dpo_script"}} == {ITERS}'
            return bool(prom.query_values(expr))

        try:
            wait_for(ended, timeout=RUN_TIMEOUT, interval=1.0, what="the run's last validation")
            process.send_signal(signal.SIGTERM)  # ends the linger
            process.wait(timeout=120)
        finally:
            processes.stop(process)
        yield prom, log.read_text(errors="replace")


def _last(prom: Any, expr: str) -> dict[str, float]:
    return prom.query_values(f"last_over_time({expr}[15m])")  # type: ignore[no-any-return]


@pytest.mark.integration
def test_mlx_otel_run_serves_an_mlx_vlm_dpo_script_with_chosen_and_rejected(
    script_run: tuple[Any, str],
) -> None:
    prom, output = script_run
    assert "vlm dpo trained" in output
    selector = '{run_id="vlm_dpo_script"}'
    assert list(_last(prom, f"mlx_train_step{selector}").values()) == [ITERS]
    (loss,) = _last(prom, f"mlx_train_loss{selector}").values()
    assert 0 < loss < 10
    (validation,) = _last(prom, f"mlx_train_validation_loss{selector}").values()
    assert validation > 0
    for name in ("mlx_train_preference_reward", "mlx_train_logits_mean"):
        series = prom.query(f"last_over_time({name}{selector}[15m])")
        assert sorted(s["metric"]["choice"] for s in series) == ["chosen", "rejected"], name
    (accuracy,) = _last(prom, f"mlx_train_preference_accuracy{selector}").values()
    assert 0 <= accuracy <= 1
