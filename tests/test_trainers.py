"""mlx-lm and mlx-lm-lora runs, monitored: the real trainers on a tiny model.

A two-layer llama with a word-level tokenizer is built in code (no download),
trained by ``mlx-otel lora`` (mlx-lm LoRA, WandB offline beside the monitor)
and ``mlx-otel lora-train`` (mlx-lm-lora GRPO with two reward functions),
each scraped by a real Prometheus. Runs are a few iterations long: the first
MLX run of a machine compiles CPU kernels, later ones take seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlx_otel.catalog import METRICS, Source
from mlx_otel.dashboards import panel_queries, regex_literal, substitute
from tests import processes
from tests.servers import REPO, PrometheusServer, free_port, wait_for
from tests.tiny_model import REWARD_FUNCTIONS, build_model, write_sum_data
from tests.wandb_records import find_run_files, read_run

pytest.importorskip("mlx_lm", reason="pip install 'mlx-otel[trainers]'")
pytest.importorskip("mlx_lm_lora", reason="pip install 'mlx-otel[trainers]'")

pytestmark = pytest.mark.integration

# The preference dashboard's panels are proven by the DPO run of tests/test_instrumentation.py.
TRAINER_PANELS = [q for q in panel_queries(REPO / "grafana" / "dashboards")
                  if q.trainer_only and q.dashboard != "Preference optimisation"]  # fmt: skip
LORA_ITERS, LORA_REPORT, LORA_EVAL = 12, 5, 6
GRPO_ITERS, GRPO_REPORT = 4, 2
# Generous: the first run of a machine compiles MLX's CPU kernels on 2 busy cores.
RUN_TIMEOUT = 420.0



@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model, an SFT and a GRPO data set and a reward-functions file, built once."""
    root = tmp_path_factory.mktemp("trainers")
    build_model(root / "model")
    write_sum_data(root)
    return root


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {"lora": free_port(), "grpo": free_port(), "constant": free_port()}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[Any]:
    workdir = tmp_path_factory.mktemp("prometheus")
    targets = [f"127.0.0.1:{port}" for port in ports.values()]
    with PrometheusServer(workdir, targets=targets) as prom:
        prom.started = time.time()
        yield prom


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("WANDB_SERVICE", None)  # the trainer starts a WandB service of its own
    env.update(
        PYTHONPATH=str(REPO), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false", WANDB_MODE="offline", WANDB_SILENT="true",
        **extra,
    )  # fmt: skip
    return env


def _monitor_config(folder: Path, name: str) -> Path:
    path = folder / f"{name}_monitor.yml"
    path.write_text(yaml.safe_dump({"monitoring": {"output_dir": str(folder / f"{name}_outputs")}}))
    return path


def _lora_args(workspace: Path, adapters: str) -> list[str]:
    return [
        "--model", str(workspace / "model"), "--train", "--data", str(workspace / "sft"),
        "--iters", str(LORA_ITERS), "--batch-size", "2", "--num-layers", "2",
        "--steps-per-report", str(LORA_REPORT), "--steps-per-eval", str(LORA_EVAL),
        "--val-batches", "1", "--adapter-path", str(workspace / adapters),
        "--report-to", "wandb", "--project-name", "trainers",
    ]  # fmt: skip


class Run:
    """A wrapper command running in the background, lingering until stopped."""

    def __init__(self, command: list[str], cwd: Path) -> None:
        self.log = cwd / f"run_{len(list(cwd.glob('run_*.log')))}.log"
        with self.log.open("w") as out:
            self.process = processes.popen(
                command, cwd=cwd, env=_env(), stdout=out, stderr=subprocess.STDOUT
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM ends the linger; the run closes cleanly (exit status 0)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=120)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def _wait_for_series(prom: Any, run: Run, expr: str, what: str) -> dict[str, float]:
    """Wait until the run lingers after training and Prometheus has ``expr``."""

    def ready() -> dict[str, float]:
        if run.process.poll() is not None:
            raise AssertionError(f"the run ended before {what}:\n{run.output()[-3000:]}")
        return "serving the last values" in run.output() and prom.query_values(expr)

    return wait_for(ready, timeout=RUN_TIMEOUT, interval=1.0, what=what)


def _last(prom: Any, expr: str) -> list[dict[str, Any]]:
    # The run has ended: its series are stale, their last samples still stored.
    return prom.query(f"last_over_time({expr}[15m])")


def _value(prom: Any, expr: str) -> float:
    values = prom.query_values(f"last_over_time({expr}[15m])")
    assert len(values) == 1, f"{expr}: {values}"
    return next(iter(values.values()))


@pytest.fixture(scope="module")
def lora_run(workspace: Path, prometheus: Any, ports: dict[str, int]) -> dict[str, Any]:
    """`mlx-otel lora` with --report-to wandb, scraped until its last report is in."""
    run_id = "lora_sft"
    command = [
        sys.executable, "-m", "mlx_otel", "lora", *_lora_args(workspace, "adapters_lora"),
        "--metrics-port", str(ports["lora"]), "--run-id", run_id,
        "--monitor-config", str(_monitor_config(workspace, "lora")), "--metrics-linger", "300",
    ]  # fmt: skip
    run = Run(command, workspace)
    try:
        _wait_for_series(
            prometheus, run, f'mlx_train_step{{run_id="{run_id}"}} == {LORA_ITERS}',
            "the last report of the LoRA run reached Prometheus",
        )  # fmt: skip
    finally:
        code = run.stop()  # WandB finishes its run at the process's exit
    assert code == 0, run.output()[-3000:]
    return {"run": run, "run_id": run_id}


def test_lora_run_reaches_prometheus_with_run_id_and_step(
    prometheus: Any, lora_run: dict[str, Any]
) -> None:
    selector = f'{{run_id="{lora_run["run_id"]}"}}'
    assert _value(prometheus, f"mlx_train_step{selector}") == LORA_ITERS
    assert 0 < _value(prometheus, f"mlx_train_loss{selector}") < 10
    assert _value(prometheus, f"mlx_train_learning_rate{selector}") == pytest.approx(1e-5)
    assert _value(prometheus, f"mlx_train_tokens_per_second{selector}") > 0
    assert _value(prometheus, f"mlx_train_iterations_per_second{selector}") > 0
    assert _value(prometheus, f"mlx_train_trained_tokens_total{selector}") > 0
    assert _value(prometheus, f"mlx_train_steps_per_report{selector}") == LORA_REPORT
    # The validation at the last iteration ran after 11 completed iterations.
    assert 0 < _value(prometheus, f"mlx_train_validation_loss{selector}") < 10
    assert _value(prometheus, f"mlx_train_validation_step{selector}") == LORA_ITERS - 1
    assert _value(prometheus, f"mlx_memory_peak_bytes{selector}") > 0
    # Three reports (iterations 5, 10 and 12), each one logged step.
    assert _value(prometheus, f"mlx_train_steps_total{selector}") == 3


def test_lora_run_writes_its_files_at_the_last_iteration(
    workspace: Path, lora_run: dict[str, Any]
) -> None:
    summary = json.loads((workspace / "lora_outputs" / "monitoring_summary.json").read_text())
    assert summary["session"]["run_id"] == lora_run["run_id"]
    rows = json.loads((workspace / "lora_outputs" / "training_metrics.json").read_text())["steps"]
    assert [row["step"] for row in rows] == [5, 10, 12]
    assert [row["validation_step"] for row in rows] == [0, 5, 11]


def _wandb_rows(adapters: Path) -> list[dict[str, Any]]:
    (path,) = find_run_files(adapters / "wandb")
    return read_run(path).history


def test_report_to_wandb_still_writes_its_run_beside_the_monitor(
    workspace: Path, lora_run: dict[str, Any]
) -> None:
    rows = _wandb_rows(workspace / "adapters_lora")
    train = [row["iteration"] for row in rows if "train_loss" in row]
    val = [row["iteration"] for row in rows if "val_loss" in row]
    assert train == [5, 10, 12] and val == [0, 5, 11]


@pytest.fixture(scope="module")
def grpo_run(workspace: Path, prometheus: Any, ports: dict[str, int]) -> dict[str, Any]:
    """`mlx-otel lora-train` in GRPO mode, options from a YAML config, scraped."""
    run_id = "grpo_rl"
    config = workspace / "grpo.yml"
    config.write_text(yaml.safe_dump({
        "model": str(workspace / "model"), "train": True, "train_mode": "grpo",
        "data": str(workspace / "grpo"), "iters": GRPO_ITERS, "batch_size": 1,
        "steps_per_report": GRPO_REPORT,
        "steps_per_eval": GRPO_ITERS, "val_batches": 1, "num_layers": 2,
        "reward_functions_file": str(workspace / "rewards.py"),
        "reward_functions": ",".join(REWARD_FUNCTIONS),
        "adapter_path": str(workspace / "adapters_grpo"), "fuse": False,
    }))  # fmt: skip
    command = [
        # mlx-lm-lora reads from YAML only the flags whose default is None.
        sys.executable, "-m", "mlx_otel", "lora-train", "--config", str(config),
        "--group-size", "2", "--max-completion-length", "6",
        "--metrics-port", str(ports["grpo"]), "--run-id", run_id,
        "--monitor-config", str(_monitor_config(workspace, "grpo")), "--metrics-linger", "300",
    ]  # fmt: skip
    run = Run(command, workspace)
    try:
        _wait_for_series(
            prometheus, run, f'mlx_train_step{{run_id="{run_id}"}} == {GRPO_ITERS}',
            "the last report of the GRPO run reached Prometheus",
        )  # fmt: skip
    finally:
        code = run.stop()
    assert code == 0, run.output()[-3000:]
    return {"run": run, "run_id": run_id}


def test_grpo_run_reaches_prometheus_with_rewards_and_kl(
    prometheus: Any, grpo_run: dict[str, Any]
) -> None:
    selector = f'{{run_id="{grpo_run["run_id"]}"}}'
    assert _value(prometheus, f"mlx_train_step{selector}") == GRPO_ITERS
    for name in ("mlx_train_loss", "mlx_train_kl", "mlx_train_kl_clip_ratio",
                 "mlx_train_reward_std", "mlx_train_grouped_reward_std",
                 "mlx_train_hit_max_tokens_ratio"):  # fmt: skip
        assert _value(prometheus, f"{name}{selector}") >= 0, name
    assert 0 <= _value(prometheus, f"mlx_train_reward_mean{selector}") <= 2
    assert _value(prometheus, f"mlx_train_learning_rate{selector}") == pytest.approx(1e-5)
    assert _value(prometheus, f"mlx_train_tokens_per_second{selector}") > 0
    assert _value(prometheus, f"mlx_train_validation_loss{selector}") >= 0
    # mlx-lm-lora reports the validation before iteration 4 as 4: 3 were completed.
    assert _value(prometheus, f"mlx_train_validation_step{selector}") == GRPO_ITERS - 1
    means = _last(prometheus, f"mlx_train_reward_function_mean{selector}")
    assert sorted(m["metric"]["reward_fn"] for m in means) == sorted(REWARD_FUNCTIONS)
    bounds = _last(prometheus, f"mlx_train_clip_ratio{selector}")
    assert sorted(m["metric"]["bound"] for m in bounds) == ["high", "low", "total"]
    stats = _last(prometheus, f"mlx_train_generated_tokens{selector}")
    assert sorted(m["metric"]["stat"] for m in stats) == ["max", "mean", "min"]
    longest = f'mlx_train_generated_tokens{{stat="max",run_id="{grpo_run["run_id"]}"}}'
    assert 0 < _value(prometheus, longest) <= 6  # --max-completion-length


def test_lora_run_serves_the_time_of_training_and_of_validation(
    prometheus: Any, lora_run: dict[str, Any]
) -> None:
    """mlx-lm validates before iterations 1, 6 and 12; training is timed between validations and
    reports: 1-5, 6-10 (the report at 5 is right before a validation), 11, 12."""
    selector = f'run_id="{lora_run["run_id"]}"'
    counts = {
        m["metric"]["phase"]: float(m["value"][1])
        for m in _last(prometheus, f"mlx_train_phase_duration_seconds_count{{{selector}}}")
    }
    assert counts == {"evaluate": 3, "train": 4}
    for phase in counts:
        total = f'mlx_train_phase_duration_seconds_sum{{{selector},phase="{phase}"}}'
        assert 0 < _value(prometheus, total) < RUN_TIMEOUT, phase


def test_grpo_run_serves_each_completion_and_the_phases_of_each_iteration(
    prometheus: Any, grpo_run: dict[str, Any]
) -> None:
    """Four iterations of one prompt and two completions: eight completions, validation's apart."""
    selector = f'run_id="{grpo_run["run_id"]}"'
    completions = GRPO_ITERS * 2
    count = _value(prometheus, f"mlx_train_completion_length_tokens_count{{{selector}}}")
    assert count == completions
    tokens = _value(prometheus, f"mlx_train_completion_length_tokens_sum{{{selector}}}")
    assert completions <= tokens <= completions * 6  # --max-completion-length
    assert _value(prometheus, f"mlx_train_group_size{{{selector}}}") == 2
    ratios = _last(prometheus, f"mlx_train_zero_std_groups_ratio{{{selector}}}")
    assert sorted(m["metric"]["outcome"] for m in ratios) == ["solved", "tied", "unsolved"]
    assert 0 <= sum(float(m["value"][1]) for m in ratios) <= 1
    assert 0 <= _value(prometheus, f"mlx_train_validation_reward{{{selector}}}") <= 2
    # Each completion's reward, where the report has only their mean.
    assert _value(prometheus, f"mlx_train_reward_count{{{selector}}}") == completions
    assert 0 <= _value(prometheus, f"mlx_train_hit_max_tokens_ratio{{{selector}}}") <= 1
    counts = {
        m["metric"]["phase"]: float(m["value"][1])
        for m in _last(prometheus, f"mlx_train_phase_duration_seconds_count{{{selector}}}")
    }
    # Validation before iterations 1 and 4 (--steps-per-eval 4).
    assert counts == {"generate": GRPO_ITERS, "reward": GRPO_ITERS, "update": GRPO_ITERS,
                      "evaluate": 2}  # fmt: skip


CONSTANT_REWARDS = """
from mlx_lm_lora.trainer.grpo_reward_functions import register_reward_function


@register_reward_function()
def always_right(prompts, completions, answer, types=None):
    return [1.0] * len(completions)
"""


@pytest.fixture(scope="module")
def constant_run(workspace: Path, prometheus: Any, ports: dict[str, int]) -> dict[str, Any]:
    """GRPO whose one reward function rates every completion 1.0: no group has spread."""
    run_id = "grpo_constant"
    (workspace / "constant_rewards.py").write_text(CONSTANT_REWARDS)
    config = workspace / "constant.yml"
    config.write_text(yaml.safe_dump({
        "model": str(workspace / "model"), "train": True, "train_mode": "grpo",
        "data": str(workspace / "grpo"), "iters": 2, "batch_size": 2, "steps_per_report": 2,
        "steps_per_eval": 100, "val_batches": 1, "num_layers": 2,
        "reward_functions_file": str(workspace / "constant_rewards.py"),
        "reward_functions": "always_right",
        "adapter_path": str(workspace / "adapters_constant"), "fuse": False,
    }))  # fmt: skip
    command = [
        sys.executable, "-m", "mlx_otel", "lora-train", "--config", str(config),
        "--group-size", "2", "--max-completion-length", "4",
        "--metrics-port", str(ports["constant"]), "--run-id", run_id,
        "--monitor-config", str(_monitor_config(workspace, "constant")),
        "--metrics-linger", "300",
    ]  # fmt: skip
    run = Run(command, workspace)
    try:
        _wait_for_series(
            prometheus, run, f'mlx_train_step{{run_id="{run_id}"}} == 2',
            "the last report of the constant-reward GRPO run reached Prometheus",
        )  # fmt: skip
    finally:
        code = run.stop()
    assert code == 0, run.output()[-3000:]
    return {"run": run, "run_id": run_id}


def test_grpo_run_whose_rewards_never_differ_serves_no_learning_signal(
    prometheus: Any, constant_run: dict[str, Any]
) -> None:
    """Every group of the report (2 iterations x 2 prompts) is solved without spread."""
    selector = f'run_id="{constant_run["run_id"]}"'
    ratios = {
        m["metric"]["outcome"]: float(m["value"][1])
        for m in _last(prometheus, f"mlx_train_zero_std_groups_ratio{{{selector}}}")
    }
    assert ratios == {"solved": 1.0, "unsolved": 0.0, "tied": 0.0}
    assert _value(prometheus, f"mlx_train_completion_length_tokens_count{{{selector}}}") == 8
    assert _value(prometheus, f"mlx_train_validation_reward{{{selector}}}") == 1.0


def test_every_trainer_metric_of_the_catalogue_reaches_prometheus(
    prometheus: Any, lora_run: dict[str, Any], grpo_run: dict[str, Any]
) -> None:
    runs = f'run_id=~"{regex_literal(lora_run["run_id"])}|{regex_literal(grpo_run["run_id"])}"'
    missing = [
        metric.prometheus_name
        for metric in METRICS
        if metric.source is Source.TRAINER
        and metric.wandb_group != "preference"  # DPO's: tests/test_instrumentation.py
        and not _last(prometheus, f"{metric.prometheus_name}{{{runs}}}")
    ]
    assert not missing, f"trainer metrics neither run served: {missing}"


@pytest.mark.parametrize("query", TRAINER_PANELS, ids=[q.label for q in TRAINER_PANELS])
def test_trainer_panel_shows_the_trainer_runs(
    prometheus: Any, lora_run: dict[str, Any], grpo_run: dict[str, Any], query: Any
) -> None:
    """Each dashboard panel marked trainer-only has data once both runs are selected."""
    runs = f"({regex_literal(lora_run['run_id'])}|{regex_literal(grpo_run['run_id'])})"
    end = time.time()
    expr = substitute(
        query.expr, run_id=runs, rank=".*", rate_interval="4s", interval="1s",
        time_range=f"{round(end - prometheus.started)}s",
    )  # fmt: skip
    result = prometheus.query_range(expr, prometheus.started, end, step="1s")
    values = [v for item in result for _, v in item["values"]]
    assert any(v not in ("NaN", "+Inf", "-Inf") for v in values), f"{query.label}: {expr}"


class _Corrupting:
    """Hands the callback a loss that is not a number, then passes the report on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.train_reports: list[int] = []

    def on_train_loss_report(self, info: dict) -> None:
        self.train_reports.append(info["iteration"])
        self.inner.on_train_loss_report({**info, "train_loss": "not a number"})

    def on_val_loss_report(self, info: dict) -> None:
        self.inner.on_val_loss_report(info)


class _Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []
        self.peaks: list[float] = []

    def on_train_loss_report(self, info: dict) -> None:
        self.calls.append(("train", info["iteration"]))
        self.peaks.append(info["peak_memory"])

    def on_val_loss_report(self, info: dict) -> None:
        self.calls.append(("val", info["iteration"]))


def test_monitoring_failures_do_not_stop_training_from_python(
    workspace: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """train_model(..., training_callback=...) with the port taken and a loss that is text.

    The trainer's peak_memory is MLX's process-wide peak: 64 MiB are allocated
    and freed before training, so every report must show at least that. A
    monitor resetting the counter at each report would lower the second one
    to the tiny model's own peak (about 2 MB).
    """
    import types

    import mlx.core as mx
    from mlx_lm.lora import CONFIG_DEFAULTS, train_model
    from mlx_lm.tuner import trainer
    from mlx_lm.tuner.datasets import load_dataset
    from mlx_lm.utils import load

    from mlx_otel.trainers import MlxLmCallback

    args = types.SimpleNamespace(**{
        **CONFIG_DEFAULTS, "model": str(workspace / "model"), "data": str(workspace / "sft"),
        "train": True, "iters": 6, "batch_size": 2, "num_layers": 2, "steps_per_report": 3,
        "steps_per_eval": 100, "val_batches": 1, "adapter_path": str(tmp_path / "adapters"),
    })  # fmt: skip
    model, tokenizer = load(args.model)
    train_set, valid_set, _ = load_dataset(args, tokenizer)
    recorder = _Recorder()
    original_evaluate = trainer.evaluate
    big = mx.zeros((16, 2**20))
    mx.eval(big)
    del big
    before = mx.get_peak_memory()
    assert before >= 64 * 2**20
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        callback = MlxLmCallback(
            config=vars(args), wrapped_callback=recorder, run_id="python_api",
            monitor_config={"exporter": {"port": port},
                            "monitoring": {"output_dir": str(tmp_path / "outputs")}},
        )  # fmt: skip
        corrupting = _Corrupting(callback)
        train_model(args, model, train_set, valid_set, training_callback=corrupting)
        # The last report ended the run on a thread of its own (a script's exit
        # would wait for it); this process goes on, so it waits here.
        callback.close()
    assert corrupting.train_reports == [3, 6]
    assert recorder.calls == [("val", 0), ("train", 3), ("val", 5), ("train", 6)]
    assert (tmp_path / "adapters" / "adapters.safetensors").exists()
    assert recorder.peaks == [pytest.approx(before / 1e9)] * 2
    assert mx.get_peak_memory() == before
    assert "cannot serve metrics" in caplog.text
    assert callback.monitor.endpoint is None
    assert callback.monitor.error_counts() == {"invalid_value": 2}
    # The last report closed the run: its files are written, once.
    rows = json.loads((tmp_path / "outputs" / "training_metrics.json").read_text())["steps"]
    assert [row["step"] for row in rows] == [3, 6]
    assert all(row.get("loss") is None for row in rows) and rows[0]["validation_loss"] > 0
    # Validations before iterations 1 and 6; training timed in between, with each report.
    assert all(row["timing/evaluate"] > 0 and row["timing/train"] > 0 for row in rows)
    assert trainer.evaluate is original_evaluate  # the trainer's own function is back


EXIT_SCRIPT = """
import sys
from mlx_otel.trainers import MlxLmLoraCallback

callback = MlxLmLoraCallback(config={"steps_per_report": 1}, run_id="cut_short",
                             monitor_config={"exporter": {"port": 0},
                                             "monitoring": {"output_dir": sys.argv[1]}})
for iteration in (1, 2):
    callback.on_train_loss_report({"iteration": iteration, "train_loss": 2.0 / iteration,
                                   "learning_rate": 1e-5, "peak_memory": 0.001})
print("exiting without closing", flush=True)
"""


def test_a_run_without_a_last_iteration_is_exported_at_interpreter_exit(tmp_path: Path) -> None:
    # No `iters` in the trainer's config: nothing marks the last report, so the
    # callback that made the monitor exports the run when the interpreter exits.
    result = processes.run(
        [sys.executable, "-c", EXIT_SCRIPT, str(tmp_path / "outputs")],
        env=_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    rows = json.loads((tmp_path / "outputs" / "training_metrics.json").read_text())["steps"]
    assert [(row["step"], row["loss"]) for row in rows] == [(1, 2.0), (2, 1.0)]
