"""mlx-lm-lora's remaining modes, monitored with no code: sft, cpo, online_dpo, ftpo, dsla, klpo.

Each mode is a real run of the installed trainer through ``mlx-otel run --
mlx_lm_lora.train --train-mode MODE``, on the shared tiny model, offline, on
MLX's Linux CPU build, scraped by one real Prometheus. The six runs start
together (a few seconds of training each) and the tests read what a user
would query: every key a mode reports lands on a named series, except the
keys docs/trainers.md lists as ``mlx_train_custom{name}`` with the reason.
online_dpo asks the tiny model itself as its judge; klpo scores with the
tiny reward functions of tests/tiny_model.py. cpo's compiled step stops at
its first iteration on this build (an ``IndexError`` inside ``mx.compile``,
unmonitored too), so it runs with ``MLX_DISABLE_COMPILE=1``: the same
trainer, the same reports, uncompiled.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests import processes
from tests.servers import PrometheusServer, ServerDied, free_port, wait_for
from tests.test_instrumentation import ITERS, REPORT, RUN_TIMEOUT, _env, _last, _metadata
from tests.tiny_model import SUMS, build_model, write_jsonl, write_preference_data, write_sum_data

pytestmark = pytest.mark.integration

#: Per mode: its data folder and the arguments it needs beyond the common ones.
MODES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sft": ("sft", ()),
    "cpo": ("dpo", ()),
    "online_dpo": ("grpo", ("--judge", "model", "--max-completion-length", "6")),
    "ftpo": ("ftpo", ()),
    "dsla": ("dpo", ()),
    "klpo": ("grpo", ("--group-size", "2", "--max-completion-length", "6",
                      "--reward-functions-file", "rewards.py",
                      "--reward-functions", "digit_reward,length_reward")),
}  # fmt: skip

#: The training keys each mode leaves as mlx_train_custom{name}, as docs/trainers.md lists them
#: (validation's are listed there too, and not checked here one by one).
CUSTOM: dict[str, set[str]] = {
    "sft": set(),
    "cpo": set(),
    "online_dpo": set(),
    "ftpo": {"train_pref_loss", "train_mse_elem", "train_mse_tgt_tokenwise",
             "train_margin_win", "train_active_weight"},
    "dsla": {"train_preference_loss", "train_latent_loss", "train_latent_sim_loss",
             "train_latent_sim_margin", "train_latent_dir_loss", "train_latent_dir_margin"},
    "klpo": {"train_regression_loss", "train_floored_tokens", "train_mc_samples"},
}  # fmt: skip


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlx_lm_lora")
    root = tmp_path_factory.mktemp("modes")
    build_model(root / "model")
    write_sum_data(root)
    write_preference_data(root)
    sums = SUMS[:8]
    # FTPO: a context, one rejected next token and the tokens preferred to it.
    rows = [{"context_with_chat_template": f"user : what is {a} plus {b} ? assistant :",
             "rejected_decoded": str((a + b + 3) % 20), "multi_chosen_decoded": [str(a + b)]}
            for a, b in sums]  # fmt: skip
    write_jsonl(root / "ftpo" / "train.jsonl", rows)
    write_jsonl(root / "ftpo" / "valid.jsonl", rows[:4])
    _metadata(root / "metadata")
    return root


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    return {mode: free_port() for mode in MODES}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[Any]:
    targets = [f"127.0.0.1:{port}" for port in ports.values()]
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets=targets) as prom:
        yield prom


def _command(mode: str) -> list[str]:
    data, extra = MODES[mode]
    return [
        sys.executable, "-m", "mlx_otel", "run", "--run-id", f"{mode}_mode", "--",
        "mlx_lm_lora.train", "--train-mode", mode, "--model", "model", "--train",
        "--data", data, "--iters", str(ITERS), "--batch-size", "1", "--num-layers", "2",
        "--steps-per-report", str(REPORT), "--steps-per-eval", str(ITERS),
        "--val-batches", "1", "--adapter-path", f"adapters_{mode}", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def runs(workspace: Path, ports: dict[str, int], prometheus: Any) -> dict[str, float]:
    """All six modes at once, each lingering until Prometheus has its last report."""
    started = time.monotonic()
    running: dict[str, tuple[subprocess.Popen[Any], Path]] = {}
    try:
        for mode in MODES:
            extra = {"MLX_DISABLE_COMPILE": "1"} if mode == "cpo" else {}
            env = _env(workspace, mode, ports[mode], MLX_OTEL_METRICS_LINGER="300", **extra)
            log = workspace / f"{mode}.log"
            with log.open("w") as out:
                running[mode] = (
                    processes.popen(_command(mode), cwd=workspace, env=env, stdout=out,
                                    stderr=subprocess.STDOUT),
                    log,
                )  # fmt: skip
        for mode, (process, log) in running.items():

            def ended(mode: str = mode, process: Any = process, log: Path = log) -> bool:
                if process.poll() is not None:
                    raise ServerDied(f"{mode} ended before its last report reached Prometheus:\n"
                                     f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip
                query = f'mlx_train_step{{run_id="{mode}_mode"}} == {ITERS}'
                return bool(prometheus.query_values(query))

            wait_for(ended, timeout=RUN_TIMEOUT, interval=1.0, what=f"the last report of {mode}")
        return {"seconds": time.monotonic() - started}
    finally:
        for process, _ in running.values():
            processes.stop(process)


def _selector(mode: str) -> str:
    return f'{{run_id="{mode}_mode"}}'


def _names(prom: Any, expr: str, label: str) -> set[str]:
    return {s["metric"][label] for s in prom.query(f"last_over_time({expr}[15m])")}


@pytest.mark.parametrize("mode", MODES)
def test_each_mode_serves_its_run_to_the_last_step(prometheus: Any, runs: Any, mode: str) -> None:
    selector = _selector(mode)
    assert list(_last(prometheus, f"mlx_train_step{selector}").values()) == [ITERS]
    (loss,) = _last(prometheus, f"mlx_train_loss{selector}").values()
    assert loss == loss  # a number, not NaN
    (validation,) = _last(prometheus, f"mlx_train_validation_loss{selector}").values()
    assert validation == validation


@pytest.mark.parametrize("mode", MODES)
def test_every_training_key_lands_on_a_named_series_or_a_documented_custom_one(
    prometheus: Any, runs: Any, mode: str
) -> None:
    custom = _names(prometheus, f"mlx_train_custom{_selector(mode)}", "name")
    assert {name for name in custom if not name.startswith("val_")} == CUSTOM[mode]


def test_sft_serves_speed_and_trained_tokens(prometheus: Any, runs: Any) -> None:
    selector = _selector("sft")
    for name in ("learning_rate", "tokens_per_second", "iterations_per_second"):
        assert len(_last(prometheus, f"mlx_train_{name}{selector}")) == 1, name
    (tokens,) = _last(prometheus, f"mlx_train_trained_tokens_total{selector}").values()
    assert tokens > 0


@pytest.mark.parametrize("mode", ["cpo", "online_dpo", "dsla"])
def test_pair_modes_serve_accuracy_margin_and_both_choices(
    prometheus: Any, runs: Any, mode: str
) -> None:
    selector = _selector(mode)
    (accuracy,) = _last(prometheus, f"mlx_train_preference_accuracy{selector}").values()
    assert 0 <= accuracy <= 1
    assert len(_last(prometheus, f"mlx_train_preference_margin{selector}")) == 1
    for name in ("mlx_train_policy_logps", "mlx_train_logits_mean"):
        assert _names(prometheus, f"{name}{selector}", "choice") == {"chosen", "rejected"}, name
    if mode != "online_dpo":  # online_dpo reports no per-choice reward in training
        choices = _names(prometheus, f"mlx_train_preference_reward{selector}", "choice")
        assert choices == {"chosen", "rejected"}


def test_ftpo_serves_its_token_win_rate_and_logit_gap_as_accuracy_and_margin(
    prometheus: Any, runs: Any
) -> None:
    selector = _selector("ftpo")
    for name in ("preference_accuracy", "validation_preference_accuracy"):
        (share,) = _last(prometheus, f"mlx_train_{name}{selector}").values()
        assert 0 <= share <= 1, name
    for name in ("preference_margin", "validation_preference_margin"):
        assert len(_last(prometheus, f"mlx_train_{name}{selector}")) == 1, name


def test_klpo_serves_reward_kl_and_completions_as_grpo_does(prometheus: Any, runs: Any) -> None:
    selector = _selector("klpo")
    for name in ("reward_mean", "reward_std", "kl", "hit_max_tokens_ratio"):
        assert len(_last(prometheus, f"mlx_train_{name}{selector}")) == 1, name
    lengths = _names(prometheus, f"mlx_train_generated_tokens{selector}", "stat")
    assert lengths == {"mean", "max", "min"}
    functions = _names(prometheus, f"mlx_train_reward_function_mean{selector}", "reward_fn")
    assert functions == {"digit_reward", "length_reward"}


def test_the_six_modes_train_within_the_suite_budget(runs: dict[str, float]) -> None:
    """Started together, the six runs reach Prometheus well within two minutes."""
    assert runs["seconds"] < 120, runs
