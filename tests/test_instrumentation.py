"""The trainer instrumentors: unmodified trainer commands and scripts, monitored.

Real runs of the real trainers on the shared tiny model, each scraped by one
real Prometheus: mlx-lm through ``opentelemetry-instrument python -m mlx_lm
lora`` (the OpenTelemetry launcher finding mlx_otel's entry points), a plain
script calling mlx-lm's trainer through ``mlx-otel run``, and mlx-lm-lora's
DPO through ``mlx-otel run`` and ORPO through ``mlx-otel lora-train`` (both
need the working-set size MLX's Linux CPU build does not report), and
mlx-guided-grpo's ``mlx-grpo`` through ``mlx-otel run``, and mlx-lm-lora's
online modes (ppo, xpo, rlhf_reinforce) with the tiny model as their judge. The launcher reads entry points from installed
metadata; the test writes that metadata from this checkout's
``pyproject.toml`` into a folder put first on ``PYTHONPATH``, so what is
tested is what the package declares. Fast tests cover what a user relies
on without a run: uninstrument restores, an unknown trainer version or
changed internals train unmonitored with one warning.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlx_otel.catalog import METRICS
from mlx_otel.dashboards import panel_queries, substitute
from mlx_otel.instrumentation import (
    INSTRUMENTORS,
    MlxLmInstrumentor,
    TrainerInstrumentor,
    working_set_supplied,
)
from mlx_otel.trainers import MlxLmCallback
from tests import processes
from tests.servers import REPO, PrometheusServer, ServerDied, free_port, wait_for
from tests.tiny_model import SUMS, build_model, write_jsonl, write_preference_data, write_sum_data

ITERS, REPORT = 4, 2
#: mlx-lm-lora's modes that generate online and ask a judge (the tiny model itself).
ONLINE_MODES = ("ppo", "xpo", "rlhf_reinforce")
#: The runs that serve the preference series.
PREFERENCE_RUNS = "dpo_pref|orpo_pref|ppo_pref|xpo_pref|rlhf_reinforce_pref"
RUN_TIMEOUT = 420.0


# -- fast: the instrumentors' contract ------------------------------------------------------
def test_the_entry_points_of_pyproject_are_the_instrumentors() -> None:
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = project["entry-points"]["opentelemetry_instrumentor"]
    assert set(declared) == set(INSTRUMENTORS)
    for name, cls in INSTRUMENTORS.items():
        assert declared[name] == f"{cls.__module__}:{cls.__name__}"


def test_instrument_wraps_mlx_lm_train_and_uninstrument_restores_it() -> None:
    pytest.importorskip("mlx_lm")
    import mlx_lm.tuner.trainer as trainer

    original = trainer.train
    instrumentor = MlxLmInstrumentor()
    instrumentor.instrument(monitor_config={"exporter": {"enabled": False}})
    try:
        assert trainer.train is not original and trainer.train.__wrapped__ is original
    finally:
        instrumentor.uninstrument()
    assert trainer.train is original


@pytest.mark.parametrize("name", ["mlx_lm_lora", "mlx_guided_grpo"])
def test_the_run_function_of_the_installed_trainer_is_wrapped_and_restored(name: str) -> None:
    """The hook against the installed package: its function takes a callback; ours is chained."""
    cls = INSTRUMENTORS[name]
    module = pytest.importorskip(cls.module)
    original = getattr(module, cls.function)
    instrumentor = cls()
    instrumentor.instrument(monitor_config={"exporter": {"enabled": False}})
    try:
        wrapped = getattr(module, cls.function)
        assert wrapped is not original and wrapped.__wrapped__ is original
    finally:
        instrumentor.uninstrument()
    assert getattr(module, cls.function) is original


_CHANGED_TRAINER = """
calls = []

def train(model, steps):
    calls.append((model, steps))
    return "trained"
"""


class _ChangedTrainer(TrainerInstrumentor):
    requirement = "mlx-lm >= 0.32.2"
    module = "changed_trainer"
    function = "train"
    callback = MlxLmCallback


def test_a_trainer_whose_internals_changed_trains_unmonitored_with_one_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    pytest.importorskip("mlx_lm")
    (tmp_path / "changed_trainer.py").write_text(_CHANGED_TRAINER)
    monkeypatch.syspath_prepend(str(tmp_path))
    instrumentor = _ChangedTrainer()
    instrumentor.instrument()
    try:
        import changed_trainer  # the hook runs at import

        assert changed_trainer.train("m", 3) == "trained"
        assert changed_trainer.train("m", 4) == "trained"
        assert changed_trainer.calls == [("m", 3), ("m", 4)]
    finally:
        instrumentor.uninstrument()
        sys.modules.pop("changed_trainer", None)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "changed_trainer.train takes no training_callback" in warnings[0].getMessage()
    assert "unmonitored" in warnings[0].getMessage()


def test_a_trainer_version_outside_the_supported_range_is_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pytest.importorskip("mlx_lm")
    import mlx_lm.tuner.trainer as trainer

    # BaseInstrumentor is a singleton per class: a subclass of MlxLmInstrumentor
    # made after it would be that very instance.
    class Future(TrainerInstrumentor):
        requirement = "mlx-lm >= 99"
        module = MlxLmInstrumentor.module
        function = MlxLmInstrumentor.function
        callback = MlxLmCallback

    original = trainer.train
    # Called by hand, and as the launcher calls it (which checks the package's
    # metadata, not the instrumentor's dependencies).
    for kwargs in ({}, {"skip_dep_check": True}):
        caplog.clear()
        instrumentor = Future()
        instrumentor.instrument(**kwargs)
        try:
            assert trainer.train is original
        finally:
            if instrumentor.is_instrumented_by_opentelemetry:
                instrumentor.uninstrument()
        (said,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
        assert "mlx-lm >= 99" in said.getMessage() and "0.32" in said.getMessage()


def test_the_working_set_size_is_supplied_only_where_mlx_lacks_it() -> None:
    mx = pytest.importorskip("mlx.core")
    key = "max_recommended_working_set_size"
    own = key in mx.device_info()
    with working_set_supplied(), working_set_supplied():
        info = mx.device_info()
        assert key in info
        if not own:  # Linux CPU build: 0, no wired-limit change
            assert info[key] == 0
            mx.set_wired_limit(info[key])
    assert (key in mx.device_info()) is own


def test_run_refuses_a_command_that_is_not_python(capsys: pytest.CaptureFixture[str]) -> None:
    from mlx_otel.cli.main import main

    assert main(["run", "--", "no-such-trainer", "--train"]) == 2
    err = capsys.readouterr().err
    assert "no-such-trainer is not a Python entry point" in err
    assert "opentelemetry-instrument no-such-trainer" in err


def test_run_gives_the_command_its_arguments_and_returns_its_exit_status() -> None:
    from mlx_otel.cli.main import main

    code = "import sys; sys.exit(3 if sys.argv[1:] == ['--train', 'x'] else 1)"
    assert main(["run", "--", "python", "-c", code, "--train", "x"]) == 3
    assert main(["run", "--", "-m", "json.tool", "--help"]) == 0


# -- real runs ------------------------------------------------------------------------------
_SCRIPT = """
import types
from mlx_lm.lora import CONFIG_DEFAULTS, train_model
from mlx_lm.tuner.datasets import load_dataset
from mlx_lm.utils import load

args = types.SimpleNamespace(**{{**CONFIG_DEFAULTS, "model": {model!r}, "data": {data!r},
    "train": True, "iters": {iters}, "batch_size": 2, "num_layers": 2,
    "steps_per_report": {report}, "steps_per_eval": 100, "val_batches": 1,
    "adapter_path": {adapters!r}}})
model, tokenizer = load(args.model)
train_set, valid_set, _ = load_dataset(args, tokenizer)
train_model(args, model, train_set, valid_set)
print("script trained")
"""


def _metadata(folder: Path) -> Path:
    """This checkout's entry points as installed metadata (what the launcher reads)."""
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    dist = folder / f"mlx_otel-{project['version']}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n"
    )
    lines = []
    for group, entries in project["entry-points"].items():
        lines.append(f"[{group}]")
        lines += [f"{name} = {value}" for name, value in entries.items()]
    (dist / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("mlx_lm")
    pytest.importorskip("mlx_lm_lora")
    root = tmp_path_factory.mktemp("instrumented")
    build_model(root / "model")
    write_sum_data(root)
    write_preference_data(root)
    sums = SUMS[:8]
    # mlx-guided-grpo keeps only answers that think first.
    rows = [{"prompt": f"what is {a} plus {b} ?", "answer": f"<think> {a} plus {b} </think> {a + b}"}
            for a, b in sums]  # fmt: skip
    write_jsonl(root / "guided" / "train.jsonl", rows)
    write_jsonl(root / "guided" / "valid.jsonl", rows[:4])
    _metadata(root / "metadata")
    return root


@pytest.fixture(scope="module")
def ports() -> dict[str, int]:
    names = ("launcher", "script", "dpo", "orpo", "guided", *ONLINE_MODES)
    return {name: free_port() for name in names}


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory, ports: dict[str, int]) -> Iterator[Any]:
    targets = [f"127.0.0.1:{port}" for port in ports.values()]
    with PrometheusServer(tmp_path_factory.mktemp("prometheus"), targets=targets) as prom:
        prom.started = time.time()
        yield prom


def _env(workspace: Path, name: str, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLX_OTEL_", "WANDB_"))}
    env.update(
        PYTHONPATH=os.pathsep.join([str(workspace / "metadata"), str(REPO)]),
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
        MLX_OTEL_EXPORTER__PORT=str(port),
        MLX_OTEL_MONITORING__OUTPUT_DIR=str(workspace / f"{name}_outputs"),
        **extra,
    )  # fmt: skip
    return env


def _train(
    command: list[str], workspace: Path, env: dict[str, str], prom: Any, run_id: str
) -> str:
    """Start a run lingering after training; return its output once Prometheus has its end."""
    log = workspace / f"{run_id}.log"
    with log.open("w") as out:
        process = processes.popen(
            command, cwd=workspace, env={**env, "MLX_OTEL_METRICS_LINGER": "300"},
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def ended() -> bool:
        if process.poll() is not None:
            raise ServerDied(f"{run_id} ended before its last report reached Prometheus:\n"
                                 f"{log.read_text(errors='replace')[-4000:]}")  # fmt: skip
        return bool(prom.query_values(f'mlx_train_step{{run_id="{run_id}"}} == {ITERS}'))

    try:
        wait_for(ended, timeout=RUN_TIMEOUT, interval=1.0, what=f"the last report of {run_id}")
        process.send_signal(signal.SIGTERM)  # ends the linger
        process.wait(timeout=120)
    finally:
        processes.stop(process)
    return log.read_text(errors="replace")


def _last(prom: Any, expr: str) -> dict[str, float]:
    # The run has ended; its last samples are still stored.
    return prom.query_values(f"last_over_time({expr}[15m])")  # type: ignore[no-any-return]


def _sft_args(workspace: Path, adapters: str) -> list[str]:
    return [
        "--model", "model", "--train", "--data", "sft", "--iters", str(ITERS),
        "--batch-size", "2", "--num-layers", "2", "--steps-per-report", str(REPORT),
        "--steps-per-eval", str(ITERS), "--val-batches", "1", "--adapter-path", adapters,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def launcher_run(workspace: Path, ports: dict[str, int], prometheus: Any) -> str:
    """``opentelemetry-instrument python -m mlx_lm lora ...``; run id from MLX_OTEL_RUN_ID."""
    launcher = Path(sys.executable).parent / "opentelemetry-instrument"
    if not launcher.exists():
        pytest.skip("opentelemetry-instrumentation is not installed")
    command = [str(launcher), sys.executable, "-m", "mlx_lm", "lora",
               *_sft_args(workspace, "adapters_launcher")]  # fmt: skip
    env = _env(workspace, "launcher", ports["launcher"], MLX_OTEL_RUN_ID="otel_launcher")
    return _train(command, workspace, env, prometheus, "otel_launcher")


@pytest.mark.integration
def test_opentelemetry_instrument_serves_an_unmodified_mlx_lm_lora_command(
    prometheus: Any, launcher_run: str, workspace: Path
) -> None:
    selector = '{run_id="otel_launcher"}'
    assert list(_last(prometheus, f"mlx_train_step{selector}").values()) == [ITERS]
    (loss,) = _last(prometheus, f"mlx_train_loss{selector}").values()
    assert 0 < loss < 10
    (validation,) = _last(prometheus, f"mlx_train_validation_loss{selector}").values()
    assert 0 < validation < 10
    rows = json.loads((workspace / "launcher_outputs" / "training_metrics.json").read_text())
    assert [row["step"] for row in rows["steps"]] == [REPORT, ITERS]


@pytest.fixture(scope="module")
def script_run(workspace: Path, ports: dict[str, int], prometheus: Any) -> str:
    """A plain script calling mlx-lm's train_model, through ``mlx-otel run -- python``."""
    script = workspace / "train_sft.py"
    script.write_text(textwrap.dedent(_SCRIPT.format(
        model=str(workspace / "model"), data=str(workspace / "sft"), iters=ITERS,
        report=REPORT, adapters=str(workspace / "adapters_script"),
    )))  # fmt: skip
    command = [sys.executable, "-m", "mlx_otel", "run", "--run-id", "script_sft",
               "--", "python", str(script)]  # fmt: skip
    output = _train(command, workspace, _env(workspace, "script", ports["script"]), prometheus,
                    "script_sft")  # fmt: skip
    return output


@pytest.mark.integration
def test_mlx_otel_run_serves_a_plain_script_calling_mlx_lm_train(
    prometheus: Any, script_run: str
) -> None:
    assert "script trained" in script_run
    selector = '{run_id="script_sft"}'
    assert list(_last(prometheus, f"mlx_train_step{selector}").values()) == [ITERS]
    (loss,) = _last(prometheus, f"mlx_train_loss{selector}").values()
    assert 0 < loss < 10
    (rate,) = _last(prometheus, f"mlx_train_tokens_per_second{selector}").values()
    assert rate > 0


@pytest.fixture(scope="module")
def dpo_run(workspace: Path, ports: dict[str, int], prometheus: Any) -> str:
    """mlx-lm-lora DPO through ``mlx-otel run``, on MLX's Linux CPU build where it runs."""
    command = [
        sys.executable, "-m", "mlx_otel", "run", "--run-id", "dpo_pref", "--",
        "mlx_lm_lora.train", "--train-mode", "dpo", "--model", "model", "--train",
        "--data", "dpo", "--iters", str(ITERS), "--batch-size", "1", "--num-layers", "2",
        "--steps-per-report", str(REPORT), "--steps-per-eval", str(ITERS),
        "--val-batches", "1", "--adapter-path", "adapters_dpo",
    ]  # fmt: skip
    return _train(command, workspace, _env(workspace, "dpo", ports["dpo"]), prometheus,
                  "dpo_pref")  # fmt: skip


@pytest.mark.integration
def test_mlx_otel_run_serves_mlx_lm_lora_dpo_with_chosen_and_rejected(
    prometheus: Any, dpo_run: str
) -> None:
    selector = '{run_id="dpo_pref"}'
    assert list(_last(prometheus, f"mlx_train_step{selector}").values()) == [ITERS]
    (loss,) = _last(prometheus, f"mlx_train_loss{selector}").values()
    assert loss > 0
    for name in ("mlx_train_preference_reward", "mlx_train_policy_logps", "mlx_train_logits_mean"):
        series = prometheus.query(f"last_over_time({name}{selector}[15m])")
        assert sorted(s["metric"]["choice"] for s in series) == ["chosen", "rejected"], name
    for name in ("mlx_train_preference_accuracy", "mlx_train_validation_preference_accuracy"):
        (accuracy,) = _last(prometheus, f"{name}{selector}").values()
        assert 0 <= accuracy <= 1, name
    (margin,) = _last(prometheus, f"mlx_train_validation_preference_margin{selector}").values()
    assert margin == margin  # a number, not NaN
    # No training key is left as a custom metric; validation's per-choice values
    # are (documented in docs/trainers.md).
    custom = prometheus.query(f"last_over_time(mlx_train_custom{selector}[15m])")
    assert custom and all(s["metric"]["name"].startswith("val_") for s in custom), custom


@pytest.fixture(scope="module")
def orpo_run(workspace: Path, ports: dict[str, int], prometheus: Any) -> str:
    """mlx-lm-lora ORPO through the wrapper command ``mlx-otel lora-train``."""
    command = [
        sys.executable, "-m", "mlx_otel", "lora-train", "--train-mode", "orpo",
        "--model", "model", "--train", "--data", "dpo", "--iters", str(ITERS),
        "--batch-size", "1", "--num-layers", "2", "--steps-per-report", str(REPORT),
        "--steps-per-eval", str(ITERS), "--val-batches", "1", "--adapter-path", "adapters_orpo",
        "--run-id", "orpo_pref", "--metrics-port", str(ports["orpo"]), "--metrics-linger", "300",
    ]  # fmt: skip
    return _train(command, workspace, _env(workspace, "orpo", ports["orpo"]), prometheus,
                  "orpo_pref")  # fmt: skip


@pytest.mark.integration
def test_mlx_otel_lora_train_serves_orpo_with_chosen_and_rejected(
    prometheus: Any, orpo_run: str
) -> None:
    selector = '{run_id="orpo_pref"}'
    for name in ("mlx_train_preference_reward", "mlx_train_policy_logps"):
        series = prometheus.query(f"last_over_time({name}{selector}[15m])")
        assert sorted(s["metric"]["choice"] for s in series) == ["chosen", "rejected"], name
    (accuracy,) = _last(prometheus, f"mlx_train_preference_accuracy{selector}").values()
    assert 0 <= accuracy <= 1


@pytest.fixture(scope="module")
def guided_run(workspace: Path, ports: dict[str, int], prometheus: Any) -> str:
    """mlx-guided-grpo's ``mlx-grpo`` command through ``mlx-otel run``."""
    pytest.importorskip("mlx_grpo")
    command = [
        sys.executable, "-m", "mlx_otel", "run", "--run-id", "guided_grpo", "--",
        "mlx-grpo", "--model", "model", "--train", "--data", "guided", "--iters", str(ITERS),
        "--batch-size", "1", "--num-layers", "2", "--steps-per-report", str(REPORT),
        "--group-size", "2", "--max-completion-length", "6", "--adapter-path", "adapters_guided",
    ]  # fmt: skip
    return _train(command, workspace, _env(workspace, "guided", ports["guided"]), prometheus,
                  "guided_grpo")  # fmt: skip


@pytest.mark.integration
def test_mlx_otel_run_serves_mlx_guided_grpo(prometheus: Any, guided_run: str) -> None:
    selector = '{run_id="guided_grpo"}'
    for name in ("mlx_train_loss", "mlx_train_reward_mean", "mlx_train_kl",
                 "mlx_train_grouped_reward_std"):  # fmt: skip
        assert len(_last(prometheus, f"{name}{selector}")) == 1, name
    functions = prometheus.query(f"last_over_time(mlx_train_reward_function_mean{selector}[15m])")
    assert len(functions) >= 2 and all(s["metric"]["reward_fn"] for s in functions)


@pytest.fixture(scope="module")
def online_runs(workspace: Path, ports: dict[str, int], prometheus: Any) -> None:
    """ppo, xpo and rlhf_reinforce through ``mlx-otel run``, the tiny model as their judge."""
    for mode in ONLINE_MODES:
        command = [
            sys.executable, "-m", "mlx_otel", "run", "--run-id", f"{mode}_pref", "--",
            "mlx_lm_lora.train", "--train-mode", mode, "--judge", "model", "--model", "model",
            "--train", "--data", "grpo", "--iters", str(ITERS), "--batch-size", "1",
            "--num-layers", "2", "--steps-per-report", str(REPORT), "--steps-per-eval",
            str(ITERS), "--val-batches", "1", "--max-completion-length", "6",
            "--adapter-path", f"adapters_{mode}",
        ]  # fmt: skip
        _train(command, workspace, _env(workspace, mode, ports[mode]), prometheus, f"{mode}_pref")


def _choices(prom: Any, expr: str) -> list[str]:
    return sorted(s["metric"]["choice"] for s in prom.query(f"last_over_time({expr}[15m])"))


@pytest.mark.integration
def test_online_preference_modes_serve_their_own_series(prometheus: Any, online_runs: None) -> None:
    ppo, xpo, rlhf = ('{run_id="ppo_pref"}', '{run_id="xpo_pref"}',
                      '{run_id="rlhf_reinforce_pref"}')  # fmt: skip
    for name in ("policy_loss", "kl_penalty", "advantage_mean", "importance_ratio_mean",
                 "preference_accuracy", "preference_margin"):  # fmt: skip
        assert len(_last(prometheus, f"mlx_train_{name}{ppo}")) == 1, name
    assert _choices(prometheus, f"mlx_train_reference_logps{ppo}") == ["chosen", "rejected"]
    assert len(_last(prometheus, 'mlx_train_clip_ratio{bound="total",run_id="ppo_pref"}')) == 1
    assert len(_last(prometheus, f"mlx_train_exploration_bonus{xpo}")) == 1
    assert _choices(prometheus, f"mlx_train_preference_kl{xpo}") == ["chosen", "rejected"]
    for name in ("reward_mean", "kl_penalty", "advantage_mean"):
        assert len(_last(prometheus, f"mlx_train_{name}{rlhf}")) == 1, name
    assert _choices(prometheus, f"mlx_train_policy_logps{rlhf}") == ["sampled"]
    assert _choices(prometheus, f"mlx_train_reference_logps{rlhf}") == ["sampled"]
    # Whatever else they report is validation's.
    custom = prometheus.query(
        f'last_over_time(mlx_train_custom{{run_id=~"{"|".join(f"{m}_pref" for m in ONLINE_MODES)}"}}[15m])'
    )
    assert all(s["metric"]["name"].startswith("val_") for s in custom), custom


@pytest.mark.integration
def test_every_preference_metric_of_the_catalogue_reaches_prometheus(
    prometheus: Any, dpo_run: str, orpo_run: str, online_runs: None
) -> None:
    runs = f'{{run_id=~"{PREFERENCE_RUNS}"}}'
    missing = [m.prometheus_name for m in METRICS if m.wandb_group == "preference"
               and not _last(prometheus, f"{m.prometheus_name}{runs}")]  # fmt: skip
    assert not missing, f"preference metrics no preference run served: {missing}"


def test_chained_callback_is_not_monitored_twice() -> None:
    """A run given mlx_otel's callback (``mlx-otel lora``) keeps that one alone."""
    from mlx_otel.instrumentation import is_monitored

    inner = types.SimpleNamespace(wrapped_callback=None)
    outer = MlxLmCallback(monitor=types.SimpleNamespace(), wrapped_callback=inner)
    assert is_monitored(types.SimpleNamespace(wrapped_callback=outer))
    assert not is_monitored(inner)


PREFERENCE_PANELS = [q for q in panel_queries(REPO / "grafana" / "dashboards")
                     if q.dashboard == "Preference optimisation" and not q.incident_only]  # fmt: skip


@pytest.mark.integration
@pytest.mark.parametrize("query", PREFERENCE_PANELS, ids=[q.label for q in PREFERENCE_PANELS])
def test_preference_panel_shows_the_preference_runs(
    prometheus: Any, dpo_run: str, orpo_run: str, online_runs: None, query: Any
) -> None:
    end = time.time()
    expr = substitute(
        query.expr, run_id=f"({PREFERENCE_RUNS})", rank=".*", rate_interval="4s", interval="1s",
        time_range=f"{round(end - prometheus.started)}s",
    )  # fmt: skip
    result = prometheus.query_range(expr, prometheus.started, end, step="1s")
    values = [v for item in result for _, v in item["values"]]
    assert any(v not in ("NaN", "+Inf", "-Inf") for v in values), f"{query.label}: {expr}"
