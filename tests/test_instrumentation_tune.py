"""mlx-tune's trainers, unmodified, monitored: SFT through mlx-lm's ``train``, the RL trainers
through their step lines and GRPO's reward function.

Real runs of mlx-tune's DPO, GRPO, SFT and ORPO trainers on the shared tiny
model (loaded with mlx-tune's own ``FastLanguageModel``, offline), side by
side, each a plain script started with ``mlx-otel run -- python script.py``
(ORPO with ``opentelemetry-instrument python script.py``, which finds the
instrumentor through this checkout's entry points) and scraped by one real
Prometheus: what a user checks is the served loss, GRPO's mean reward,
its groups without learning signal (``zero_std_groups_ratio``) and the
group size, under the run id given. Fast tests cover the rest of the
contract: uninstrument restores mlx-tune's module and classes, and a trainer
whose internals changed (a step line in another format, an attribute gone,
a class gone) trains unmonitored after one warning.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.instrumentation import INSTRUMENTORS, MlxTuneInstrumentor
from tests import processes
from tests.servers import PrometheusServer, ServerDied, free_port, wait_for
from tests.test_instrumentation import _env, _last, _metadata
from tests.tiny_model import build_model

ITERS, REPORT = 4, 2
RUN_TIMEOUT = 300.0
#: Run id -> trainer; tune_orpo is started by opentelemetry-instrument, the others by mlx-otel run.
RUNS = {"tune_dpo": "dpo", "tune_grpo": "grpo", "tune_sft": "sft", "tune_orpo": "orpo"}
_OFF = {"exporter": {"enabled": False}}


def _config(tmp_path: Path) -> dict[str, Any]:
    return {
        **_OFF,
        "monitoring": {"output_dir": str(tmp_path / "outputs"), "generate_charts_every": 0},
    }


# -- fast: the instrumentor's contract ----------------------------------------------------
def test_mlx_tune_is_an_instrumentor_of_mlx_otel_run() -> None:
    assert INSTRUMENTORS["mlx_tune"] is MlxTuneInstrumentor


def test_instrument_wraps_the_rl_trainers_and_uninstrument_restores_them(tmp_path: Path) -> None:
    module = pytest.importorskip("mlx_tune.rl_trainers")
    names = ("DPOTrainer", "ORPOTrainer", "GRPOTrainer", "KTOTrainer", "SimPOTrainer")
    originals = {name: vars(getattr(module, name))["train"] for name in names}
    instrumentor = MlxTuneInstrumentor()
    instrumentor.instrument(monitor_config=_config(tmp_path))
    try:
        for name in names:
            wrapped = vars(getattr(module, name))["train"]
            assert wrapped is not originals[name] and wrapped.__wrapped__ is originals[name]
        assert "print" in vars(module)
    finally:
        instrumentor.uninstrument()
    assert {name: vars(getattr(module, name))["train"] for name in names} == originals
    assert "print" not in vars(module)  # the builtin again


_CHANGED = """
class DPOTrainer:
    def __init__(self, iters=4, logging_steps=2):
        self.iters, self.logging_steps = iters, logging_steps

    def train(self):
        for step in range(self.iters):
            if (step + 1) % self.logging_steps == 0:
                print(f"  Step {step + 1}/{self.iters} - loss={0.5:.4f}")
        return "trained"


class KTOTrainer(DPOTrainer):
    def train(self):
        print("iter 2: loss 0.5")
        return "trained"


class SimPOTrainer(DPOTrainer):
    use_native = False

    def train(self):
        return "trained in a subprocess"


class GRPOTrainer(DPOTrainer):
    def __init__(self, reward_fn):
        super().__init__()
        self.reward_fn = reward_fn      # num_generations is gone

    def train(self):
        self.scores = [self.reward_fn("1", "1") for _ in range(4)]
        print(f"  Step 4/4 | Loss: 0.5000 | Reward: {sum(self.scores) / 4:.3f}")
        return "trained"
"""


class _ChangedTune(MlxTuneInstrumentor):
    _instance = None  # BaseInstrumentor is a singleton per class: not MlxTuneInstrumentor's
    module = "changed_tune"


@pytest.fixture
def changed_tune(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> Iterator[Any]:
    """An mlx-tune whose internals changed, instrumented; the warnings of its import cleared."""
    pytest.importorskip("mlx_tune")
    (tmp_path / "changed_tune.py").write_text(_CHANGED)
    monkeypatch.syspath_prepend(str(tmp_path))
    instrumentor = _ChangedTune()
    instrumentor.instrument(monitor_config=_config(tmp_path), skip_dep_check=True)
    try:
        import changed_tune

        (gone,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "changed_tune.ORPOTrainer.train is gone" in gone and "unmonitored" in gone
        caplog.clear()
        instrumentor._warned = False  # said once per process; each case below says its own
        yield changed_tune
    finally:
        instrumentor.uninstrument()
        sys.modules.pop("changed_tune", None)


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_step_line_in_another_format_trains_unmonitored_with_one_warning(
    changed_tune: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    trainer = changed_tune.DPOTrainer()
    assert trainer.train() == "trained"
    assert trainer.train() == "trained"
    assert capsys.readouterr().out.count("- loss=0.5000") == 4  # printed as before
    (said,) = _warnings(caplog)
    assert "step line mlx_otel does not know" in said and "unmonitored" in said


def test_a_trainer_that_prints_no_step_line_trains_unmonitored_with_one_warning(
    changed_tune: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert changed_tune.KTOTrainer().train() == "trained"
    (said,) = _warnings(caplog)
    assert "KTOTrainer printed no step line mlx_otel knows" in said and "unmonitored" in said


def test_a_trainer_training_in_a_subprocess_is_said_to_be_unmonitored(
    changed_tune: Any, caplog: pytest.LogCaptureFixture
) -> None:
    assert changed_tune.SimPOTrainer().train() == "trained in a subprocess"
    (said,) = _warnings(caplog)
    assert "use_native=False" in said and "unmonitored" in said


def test_a_trainer_without_an_attribute_it_had_trains_unmonitored_with_one_warning(
    changed_tune: Any, caplog: pytest.LogCaptureFixture
) -> None:
    def reward(completion: str, answer: str) -> float:
        return 1.0

    trainer = changed_tune.GRPOTrainer(reward)
    assert trainer.train() == "trained" and trainer.scores == [1.0] * 4
    assert trainer.reward_fn is reward
    (said,) = _warnings(caplog)
    assert "GRPOTrainer has no num_generations" in said and "unmonitored" in said


# -- real runs --------------------------------------------------------------------------
_SCRIPT = """
import itertools
import sys

from mlx_tune import (DPOConfig, DPOTrainer, FastLanguageModel, GRPOConfig, GRPOTrainer,
                      ORPOConfig, ORPOTrainer, SFTConfig, SFTTrainer)

mode = sys.argv[1]
model, tokenizer = FastLanguageModel.from_pretrained({model!r}, max_seq_length=64)
model = FastLanguageModel.get_peft_model(model, r=4, target_modules=["q_proj", "v_proj"])
sums = [(i % 7, (i * 3) % 5) for i in range(8)]
common = dict(max_steps={iters}, logging_steps={report}, per_device_train_batch_size=1,
              output_dir=mode)
if mode in ("dpo", "orpo"):
    rows = [{{"prompt": f"what is {{a}} plus {{b}} ?", "chosen": f" {{a + b}} </s>",
             "rejected": f" {{(a + b + 3) % 20}} </s>"}} for a, b in sums]
    trainer, config = (DPOTrainer, DPOConfig) if mode == "dpo" else (ORPOTrainer, ORPOConfig)
    trainer(model=model, train_dataset=rows, tokenizer=tokenizer, args=config(**common)).train()
elif mode == "grpo":
    calls = itertools.count()
    # Groups of two: [0, 1], then [0, 0] (all equal: no learning signal, the update skipped).
    def reward(completion, answer):
        return float(next(calls) % 4 == 1)
    rows = [{{"prompt": f"what is {{a}} plus {{b}} ?", "answer": str(a + b)}} for a, b in sums]
    GRPOTrainer(model=model, train_dataset=rows, tokenizer=tokenizer, reward_fn=reward,
                args=GRPOConfig(num_generations=2, max_completion_length=6, **common)).train()
else:
    rows = [{{"text": f"what is {{a}} plus {{b}} ? {{a + b}} </s>"}} for a, b in sums]
    SFTTrainer(model=model, tokenizer=tokenizer, train_dataset=rows,
               args=SFTConfig(dataset_text_field="text", max_seq_length=64,
                              adapter_path="sft/adapters", **common)).train()
print("script trained", mode, flush=True)
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """DPO, GRPO and SFT scripts run side by side through ``mlx-otel run``; Prometheus, outputs."""
    pytest.importorskip("mlx_tune")
    root = tmp_path_factory.mktemp("tune")
    build_model(root / "model")
    script = root / "train_tune.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(
        model=str(root / "model"), iters=ITERS, report=REPORT)))  # fmt: skip
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.skip("opentelemetry-instrumentation is not installed")
    _metadata(root / "metadata")  # this checkout's entry points, which the launcher reads
    ports = {run: free_port() for run in RUNS}
    targets = [f"127.0.0.1:{port}" for port in ports.values()]
    with PrometheusServer(root / "prometheus", targets=targets) as prom:
        started: dict[str, tuple[subprocess.Popen[Any], Path]] = {}
        try:
            for run, mode in RUNS.items():
                log = root / f"{run}.log"
                command = [sys.executable, "-m", "mlx_otel", "run", "--run-id", run, "--",
                           "python", str(script), mode]  # fmt: skip
                env = {**_env(root, run, ports[run]), "MLX_OTEL_METRICS_LINGER": "300"}
                if mode == "orpo":
                    command = [str(launcher), sys.executable, str(script), mode]
                    env["MLX_OTEL_RUN_ID"] = run
                with log.open("w") as out:
                    started[run] = processes.popen(command, cwd=root, env=env, stdout=out,
                                                   stderr=subprocess.STDOUT), log  # fmt: skip
            outputs = {run: _until_served(prom, run, *started[run]) for run in RUNS}
        finally:
            for process, _ in started.values():
                processes.stop(process)
        yield prom, outputs


def _until_served(prom: Any, run: str, process: subprocess.Popen[Any], log: Path) -> str:
    """Wait for the run's last report in Prometheus, end its linger; its output."""

    def ended() -> bool:
        if process.poll() is not None:
            raise ServerDied(f"{run} ended before its last report reached Prometheus:\n"
                             f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip
        return bool(prom.query_values(f'mlx_train_step{{run_id="{run}"}} == {ITERS}'))

    wait_for(ended, timeout=RUN_TIMEOUT, interval=1.0, what=f"the last report of {run}")
    # The linger begins once the script is done (its last line): end the linger, not the training.
    wait_for(lambda: "script trained" in log.read_text(errors="replace"), timeout=RUN_TIMEOUT,
             interval=0.2, what=f"the end of {run}'s script")  # fmt: skip
    process.send_signal(signal.SIGTERM)  # ends the linger
    # mlx-otel run returns the script's status; under the launcher, the monitor's SIGTERM
    # handler ends the run's linger and then lets the signal end the process.
    ok = (0, -signal.SIGTERM) if run == "tune_orpo" else (0,)
    assert process.wait(timeout=120) in ok, log.read_text(errors="replace")[-4000:]
    return log.read_text(errors="replace")


@pytest.mark.integration
def test_mlx_tune_dpo_serves_its_loss(served: tuple[Any, dict[str, str]]) -> None:
    prom, outputs = served
    assert "script trained dpo" in outputs["tune_dpo"]
    assert "Step 4/4 | Loss:" in outputs["tune_dpo"]  # the trainer's own lines still printed
    selector = '{run_id="tune_dpo"}'
    (loss,) = _last(prom, f"mlx_train_loss{selector}").values()
    assert 0 < loss < 10
    (every,) = _last(prom, f"mlx_train_steps_per_report{selector}").values()
    assert every == REPORT


@pytest.mark.integration
def test_opentelemetry_instrument_serves_an_unmodified_mlx_tune_orpo_script(
    served: tuple[Any, dict[str, str]],
) -> None:
    prom, outputs = served
    assert "script trained orpo" in outputs["tune_orpo"]
    selector = '{run_id="tune_orpo"}'
    (loss,) = _last(prom, f"mlx_train_loss{selector}").values()
    assert loss > 0


@pytest.mark.integration
def test_mlx_tune_grpo_serves_rewards_and_groups_without_learning_signal(
    served: tuple[Any, dict[str, str]],
) -> None:
    prom, outputs = served
    assert "(skipped, equal rewards)" in outputs["tune_grpo"]
    selector = '{run_id="tune_grpo"}'
    assert len(_last(prom, f"mlx_train_loss{selector}")) == 1
    (reward,) = _last(prom, f"mlx_train_reward_mean{selector}").values()
    assert reward == pytest.approx(0.25)  # groups of means 0 and 0.5, each report
    (size,) = _last(prom, f"mlx_train_group_size{selector}").values()
    assert size == 2
    # Half of each report's groups were all-equal (all zero: "unsolved").
    ratios = prom.query(f"last_over_time(mlx_train_zero_std_groups_ratio{selector}[15m])")
    assert {s["metric"]["outcome"]: float(s["value"][1]) for s in ratios}["unsolved"] == 0.5
    (scored,) = _last(prom, f"mlx_train_reward_count{selector}").values()
    assert scored == ITERS * 2  # every completion's reward, in the histogram


@pytest.mark.integration
def test_mlx_tune_sft_is_served_through_mlx_lm_train(served: tuple[Any, dict[str, str]]) -> None:
    prom, outputs = served
    assert "script trained sft" in outputs["tune_sft"]
    selector = '{run_id="tune_sft"}'
    (loss,) = _last(prom, f"mlx_train_loss{selector}").values()
    assert 0 < loss < 10
    (validation,) = _last(prom, f"mlx_train_validation_loss{selector}").values()
    assert 0 < validation < 10
