"""EnhancedWandBLogger against the real wandb client in offline mode.

Each test reads the run's ``.wandb`` transaction log back (tests/wandb_records.py)
and asserts on what wandb recorded, not on the logger's internals. wandb
start-up costs ~0.5 s, so most assertions share one run per module.
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("wandb")

from mlx_otel.integrations import wandb_start  # noqa: E402
from mlx_otel.integrations.wandb_bridge import (  # noqa: E402
    DEFAULT_KEY_GROUPS,
    EnhancedWandBLogger,
    group_key,
    has_wandb_credentials,
)

try:  # tests/ as a package or as a plain directory on sys.path
    from tests import processes
    from tests.wandb_records import RunRecords, read_run
except ImportError:  # pragma: no cover - depends on pytest's import mode
    import processes  # type: ignore[no-redef]
    from wandb_records import RunRecords, read_run  # type: ignore[no-redef]

REPO = Path(__file__).resolve().parents[1]
UNROUTABLE = "http://127.0.0.1:9"  # the discard port: any HTTP attempt fails at once


# --------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def offline_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[tuple[Any, ...]]]:
    """Offline wandb with every cache in a tmp dir and no way to the network.

    Yields the list of non-local connection attempts made from this process.
    wandb reads its environment once per session, so the session is torn
    down before (to read ours) and after (not to leak ours to other tests).
    """
    import wandb

    wandb.teardown()
    home = tmp_path_factory.mktemp("wandb_home")
    patch = pytest.MonkeyPatch()
    for var in ("WANDB_API_KEY", "WANDB_IDENTITY_TOKEN_FILE", "WANDB_DISABLED", "WANDB_RUN_ID"):
        patch.delenv(var, raising=False)
    env = {
        "WANDB_MODE": "offline",
        "WANDB_SILENT": "true",
        "WANDB_ERROR_REPORTING": "false",
        "WANDB_DISABLE_GIT": "true",
        "WANDB_BASE_URL": UNROUTABLE,
        "WANDB_DIR": str(home),
        "WANDB_CONFIG_DIR": str(home / "config"),
        "WANDB_CACHE_DIR": str(home / "cache"),
        "WANDB_DATA_DIR": str(home / "data"),
        "WANDB_ARTIFACT_DIR": str(home / "artifacts"),
        "NETRC": str(home / "no-netrc"),
        "HTTP_PROXY": UNROUTABLE,
        "HTTPS_PROXY": UNROUTABLE,
        "NO_PROXY": "",
    }
    for key, value in env.items():
        patch.setenv(key, value)

    attempts: list[tuple[Any, ...]] = []
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            host = address[0]
            if host not in ("127.0.0.1", "::1", "localhost"):
                attempts.append(address)
                raise OSError(f"test forbids network access to {address}")
        return real_connect(sock, address)

    patch.setattr(socket.socket, "connect", guarded_connect)
    yield attempts
    wandb.teardown()
    patch.undo()


def _png(path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1, 2], [0.5, 0.4, 0.3])
    fig.savefig(path)
    plt.close(fig)
    return path


SAMPLE_STEPS = (5, 6, 10)


@pytest.fixture(scope="module")
def shared_run(
    offline_env: list[tuple[Any, ...]], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """One offline run exercising every method; returns the logger and records."""
    tmp = tmp_path_factory.mktemp("shared_run")
    chart = _png(tmp / "training_curves_step_10.png")
    ckpt_file = tmp / "weights.safetensors"
    ckpt_file.write_bytes(b"\x00" * 128)
    ckpt_dir = tmp / "step_10"
    ckpt_dir.mkdir()
    (ckpt_dir / "model.safetensors").write_bytes(b"\x01" * 64)
    (ckpt_dir / "config.json").write_text("{}")

    wb = EnhancedWandBLogger(
        "mlx-otel-tests",
        "shared",
        mode="offline",
        dir=tmp,
        config={"lr": 2e-6},
        log_samples_every=5,
        max_logged_samples=3,
        strict=True,
    )
    results: dict[str, Any] = {"logger": wb, "tmp": tmp}
    for step in range(11):
        wb.log_training_metrics(
            loss=1.0 / (step + 1),
            reward=0.1 * step,
            grad_norm=0.5,
            learning_rate=2e-6,
            step=step,
            memory_allocated_mb=800.0 + step,
            thinking_tokens=100 + step,
            kl=0.01 * step,
        )
    wb.log_metrics({"custom/metric1": 1.5, "eval/accuracy": 0.75}, step=10)
    wb.log_distribution("rewards", [0.25, 0.5, 0.75, 1.0, float("nan")], step=5)
    n = 7  # more than max_logged_samples
    results["tables"] = {
        step: wb.log_sample_table(
            prompts=[f"p{step}-{i}" for i in range(n)],
            generations=[f"g{i}" for i in range(n)],
            references=[f"r{i}" for i in range(n)],
            rewards=[i / n for i in range(n)],
            step=step,
        )
        for step in SAMPLE_STEPS
    }
    results["chart"] = wb.log_chart("training_curves", chart, step=10)
    wb.log_gradients({"layers.0.attn": 0.125, "layers.1.mlp": 0.25}, step=10)
    results["alerts"] = [
        wb.alert(title="High Memory Usage", text="Memory exceeds 8GB", level="WARN"),
        wb.alert(title="High Memory Usage", text="Memory exceeds 8GB again", level="WARN"),
        wb.alert(title="Loss is NaN", text="loss became NaN at step 10", level="ERROR"),
    ]
    results["ckpt"] = [
        wb.log_checkpoint(ckpt_file, name="policy", metadata={"loss": 0.09}, aliases=["best"]),
        wb.log_checkpoint(ckpt_dir),
    ]
    wb.log_training_metrics(loss=float("nan"), step=11)
    wb.log_training_metrics(loss=9.0, step=3)  # a resumed run: the step goes back
    wb.log_metrics({"after_restart": 1.0})  # no step: the last step (3) is used
    results["sync_dir"] = wb.sync_dir
    wb.finish()
    results["records"] = read_run(wb.sync_dir)
    return results


@pytest.fixture(scope="module")
def records(shared_run: dict[str, Any]) -> RunRecords:
    return shared_run["records"]


# ----------------------------------------------------------- shared run: data


def test_run_is_offline_with_config_and_steps_on_train_step(shared_run, records) -> None:
    assert shared_run["logger"].mode == "offline"
    assert shared_run["sync_dir"].name.startswith("offline-run-")
    assert records.project == "mlx-otel-tests" and records.name == "shared"
    assert records.config["lr"] == 2e-6
    assert {"name": "", "glob_name": "*", "step_metric": "train/step"} in records.metrics
    assert records.exit_code == 0


def test_training_metrics_land_under_grouped_keys_at_their_steps(records) -> None:
    rows = records.by_step()
    for step in range(11):
        row = rows[step]
        if step != 3:  # step 3 is logged again after the restart, see below
            assert row["train/loss"] == pytest.approx(1.0 / (step + 1))
        assert row["rl/reward"] == pytest.approx(0.1 * step)
        assert row["train/grad_norm"] == 0.5
        assert row["train/learning_rate"] == 2e-6
        assert row["memory/memory_allocated_mb"] == 800.0 + step
        assert row["rl/thinking_tokens"] == 100 + step
        assert row["custom/kl"] == pytest.approx(0.01 * step)
    assert rows[10]["custom/metric1"] == 1.5
    assert rows[10]["eval/accuracy"] == 0.75  # keys with "/" are kept as given


def test_nan_loss_is_recorded_not_dropped(records) -> None:
    assert math.isnan(records.by_step()[11]["train/loss"])


def test_step_going_backwards_is_still_recorded(records) -> None:
    losses_at_3 = [
        row["train/loss"]
        for row in records.history
        if row.get("train/step") == 3 and "train/loss" in row
    ]
    assert losses_at_3 == [pytest.approx(0.25), 9.0]
    assert records.steps_with("custom/after_restart") == [3]


def test_distribution_is_a_histogram_with_summary_stats(records) -> None:
    row = records.by_step()[5]
    hist = row["rl/rewards"]
    assert hist["_type"] == "histogram"
    assert sum(hist["values"]) == 4  # NaN left out of the bins ...
    assert row["rl/rewards/nonfinite"] == 1  # ... and counted
    assert hist["bins"][0] == 0.25 and hist["bins"][-1] == 1.0
    assert row["rl/rewards/mean"] == pytest.approx(0.625)
    assert row["rl/rewards/std"] == pytest.approx(math.sqrt(0.078125))
    assert (row["rl/rewards/min"], row["rl/rewards/max"]) == (0.25, 1.0)


def test_sample_tables_only_at_divisible_steps_and_truncated(shared_run, records) -> None:
    assert shared_run["tables"] == {5: True, 6: False, 10: True}
    assert records.steps_with("rl/samples") == [5, 10]
    table = records.table("rl/samples", step=10)
    assert table["columns"] == ["step", "prompt", "generation", "reference", "reward"]
    assert table["data"] == [
        [10, "p10-0", "g0", "r0", 0.0],
        [10, "p10-1", "g1", "r1", pytest.approx(1 / 7)],
        [10, "p10-2", "g2", "r2", pytest.approx(2 / 7)],
    ]


def test_chart_is_logged_as_an_image(shared_run, records) -> None:
    assert shared_run["chart"] is True
    image = records.by_step()[10]["charts/training_curves"]
    assert image["_type"] == "image-file" and image["format"] == "png"
    path = records.media_path("charts/training_curves", step=10)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_gradients_are_grouped(records) -> None:
    row = records.by_step()[10]
    assert row["gradients/layers.0.attn"] == 0.125
    assert row["gradients/layers.1.mlp"] == 0.25


def test_alerts_are_recorded_and_rate_limited_per_title(shared_run, records) -> None:
    assert shared_run["alerts"] == [True, False, True]
    assert shared_run["logger"].suppressed_alerts == {"High Memory Usage": 1}
    assert records.alerts == [
        {
            "title": "High Memory Usage",
            "text": "Memory exceeds 8GB",
            "level": "WARN",
            "wait_duration_s": 300.0,
        },
        {
            "title": "Loss is NaN",
            "text": "loss became NaN at step 10",
            "level": "ERROR",
            "wait_duration_s": 300.0,
        },
    ]


def test_checkpoints_are_model_artifacts(shared_run, records) -> None:
    assert shared_run["ckpt"] == [True, True]
    policy = records.artifact("policy")
    assert policy["type"] == "model"
    assert "best" in policy["aliases"]
    assert policy["metadata"] == {"step": 10, "loss": 0.09}
    assert policy["files"] == {"weights.safetensors": 128}
    run_id = records.path.stem.removeprefix("run-")
    whole_dir = records.artifact(f"model-{run_id}")
    assert whole_dir["type"] == "model"
    assert whole_dir["files"] == {"model.safetensors": 64, "config.json": 2}


def test_nothing_tried_the_network(shared_run, offline_env) -> None:
    assert offline_env == []
    assert shared_run["logger"].error_counts == {}


# ------------------------------------------------------------ separate runs


def test_seed_usage_example_runs_as_written(offline_env, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the seed passes no dir
    chart_path = _png(tmp_path / "training_curves.png")

    # --- the seed's "WandB Integration" example ---
    # fmt: off
    # Initialize
    wandb_logger = EnhancedWandBLogger(
        project="my-project",
        name="experiment-001"
    )

    # Log metrics
    wandb_logger.log_training_metrics(
        loss=0.5,
        reward=0.8,
        grad_norm=0.1,
        learning_rate=2e-6,
        step=100
    )

    # Log distribution
    wandb_logger.log_distribution(
        name="rewards",
        values=[0.6, 0.7, 0.8, 0.9],
        step=100
    )

    # Log sample table
    wandb_logger.log_sample_table(
        prompts=["prompt1", "prompt2"],
        generations=["gen1", "gen2"],
        references=["ref1", "ref2"],
        rewards=[0.8, 0.9],
        step=100
    )

    # Log chart
    wandb_logger.log_chart("training_curves", chart_path)

    # Send alert
    wandb_logger.alert(
        title="High Memory Usage",
        text="Memory exceeds 8GB",
        level="WARN"
    )
    # fmt: on
    # --- end of the example ---

    # The seed's "Custom Metrics" call, too.
    wandb_logger.log_metrics({"custom/metric1": 1.0, "custom/metric2": 2.0}, step=101)
    wandb_logger.finish()

    # No dir given: wandb picks it (./wandb of the process's first run).
    run = read_run(wandb_logger.sync_dir)
    rows = run.by_step()
    assert run.project == "my-project" and run.name == "experiment-001"
    assert rows[100]["train/loss"] == 0.5 and rows[100]["rl/reward"] == 0.8
    assert rows[100]["rl/rewards"]["_type"] == "histogram"
    assert run.table("rl/samples", step=100)["data"][1] == [100, "prompt2", "gen2", "ref2", 0.9]
    assert rows[100]["charts/training_curves"]["_type"] == "image-file"  # at the last step
    assert [a["title"] for a in run.alerts] == ["High Memory Usage"]
    assert rows[101]["custom/metric2"] == 2.0
    assert wandb_logger.error_counts == {}


def test_context_manager_marks_a_failed_run(offline_env, tmp_path) -> None:
    with pytest.raises(RuntimeError), EnhancedWandBLogger("p", dir=tmp_path) as wb:
        wb.log_metrics({"loss": 1.0}, step=1)
        raise RuntimeError("training crashed")
    assert not wb.enabled
    wb.log_metrics({"loss": 2.0}, step=2)  # after finish: a no-op, not an error
    run = read_run(tmp_path / "wandb")
    assert run.exit_code == 1
    assert run.steps_with("train/loss") == [1]


def test_concurrent_calls_from_threads_lose_no_rows(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger("p", dir=tmp_path, strict=True)
    per_thread = 50

    def work(offset: int) -> None:
        for i in range(per_thread):
            wb.log_metrics({f"thread{offset}": float(i)})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wb.finish()
    history = read_run(tmp_path / "wandb").history
    for t in range(3):
        values = [row[f"custom/thread{t}"] for row in history if f"custom/thread{t}" in row]
        assert values == [float(i) for i in range(per_thread)]
    assert sorted(row["_step"] for row in history) == list(range(len(history)))


def test_alert_is_sent_again_after_the_interval(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger("p", dir=tmp_path, alert_min_interval_s=0.05)
    assert wb.alert("Stalled", "no step for 10 min", level="info") is True
    assert wb.alert("Stalled", "no step for 10 min") is False
    import time

    time.sleep(0.06)
    assert wb.alert("Stalled", "still no step", level="ERROR") is True
    wb.finish()
    alerts = read_run(tmp_path / "wandb").alerts
    assert [(a["text"], a["level"]) for a in alerts] == [
        ("no step for 10 min", "INFO"),
        ("still no step", "ERROR"),
    ]


# ------------------------------------------------------------------ failures


def test_wandb_failures_are_counted_and_logged_once(offline_env, tmp_path, caplog) -> None:
    kinds: list[str] = []
    wb = EnhancedWandBLogger("p", dir=tmp_path, on_error=kinds.append)
    wb.run.finish()  # the run dies under the logger: every wandb call now raises
    with caplog.at_level(logging.WARNING, logger="mlx_otel.integrations.wandb_bridge"):
        wb.log_metrics({"loss": 1.0}, step=1)
        wb.log_training_metrics(loss=1.0, step=2)
        assert wb.alert("t", "x") is False
        assert wb.log_chart("missing", tmp_path / "nope.png") is False
        assert wb.log_checkpoint(tmp_path / "nope.ckpt") is False
    assert wb.error_counts == {"log": 2, "alert": 1, "chart": 1, "artifact": 1}
    assert kinds == ["log", "log", "alert", "chart", "artifact"]
    log_lines = [r.getMessage() for r in caplog.records if "WandB log failed" in r.getMessage()]
    assert len(log_lines) == 1
    wb.finish()


def test_online_start_failure_falls_back_to_offline(
    offline_env, tmp_path, monkeypatch, caplog
) -> None:
    import wandb

    monkeypatch.setenv("WANDB_API_KEY", "d" * 40)  # the server (127.0.0.1:9) is unreachable
    with caplog.at_level(logging.WARNING, logger="mlx_otel.integrations.wandb_bridge"):
        wb = EnhancedWandBLogger(
            "p",
            mode="online",
            dir=tmp_path,
            init_kwargs={"settings": wandb.Settings(init_timeout=2)},
        )
    assert (wb.mode, wb.enabled, wb.error_counts) == ("offline", True, {"init": 1})
    assert any("logging offline instead" in r.getMessage() for r in caplog.records)
    wb.log_metrics({"loss": 0.5}, step=1)
    wb.finish()
    assert read_run(wb.sync_dir).by_step()[1]["train/loss"] == 0.5


def test_strict_mode_raises_wandb_failures(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger("p", dir=tmp_path, strict=True)
    wb.run.finish()
    with pytest.raises(Exception, match="finish"):
        wb.log_metrics({"loss": 1.0}, step=1)
    wb.finish()


def test_init_failure_disables_the_logger(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger("p", dir=tmp_path, init_kwargs={"no_such_argument": 1})
    assert not wb.enabled and wb.error_counts == {"init": 1}
    wb.log_training_metrics(loss=1.0, step=1)
    assert wb.alert("t", "x") is False
    wb.finish()
    with pytest.raises(TypeError):
        EnhancedWandBLogger("p", dir=tmp_path, init_kwargs={"no_such_argument": 1}, strict=True)


def test_invalid_values_are_dropped_and_counted(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger("p", dir=tmp_path)
    wb.log_training_metrics(loss="high", reward=0.5, step=1, note={"a": 1})
    wb.log_gradients({"layer0": None, "layer1": 0.5}, step=1)
    wb.log_sample_table(["p1", "p2"], ["g1"], None, None, step=5)
    wb.finish()
    assert wb.error_counts == {"invalid_value": 4}
    rows = read_run(tmp_path / "wandb").by_step()
    assert rows[1]["rl/reward"] == 0.5 and "train/loss" not in rows[1]
    assert rows[1]["gradients/layer1"] == 0.5
    assert read_run(tmp_path / "wandb").table("rl/samples", step=5)["data"] == [
        [5, "p1", "g1", None, None]
    ]
    disabled = EnhancedWandBLogger("p", mode="disabled", strict=True)
    disabled.log_metrics({"loss": "x"})  # disabled: values are not even looked at
    with (
        EnhancedWandBLogger("p", dir=tmp_path / "s", strict=True) as strict,
        pytest.raises(ValueError, match="not a number"),
    ):
        strict.log_metrics({"loss": "x"})


# ------------------------------------------------------- modes and credentials


def test_without_credentials_runs_offline_and_says_so_once(
    offline_env, tmp_path, monkeypatch, caplog
) -> None:
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setattr(wandb_start, "_notices_given", set())
    assert has_wandb_credentials() is False
    with caplog.at_level(logging.WARNING, logger="mlx_otel.integrations.wandb_bridge"):
        first = EnhancedWandBLogger("p", dir=tmp_path / "a")
        first.finish()
        second = EnhancedWandBLogger("p", dir=tmp_path / "b")
        second.finish()
    assert first.mode == second.mode == "offline"
    notices = [r.getMessage() for r in caplog.records if "offline" in r.getMessage()]
    assert len(notices) == 1
    assert "wandb login" in notices[0] and "WANDB_API_KEY" in notices[0]
    assert f"wandb sync {first.sync_dir}" in notices[0]
    assert read_run(first.sync_dir).exit_code == 0


def test_credentials_are_found_in_env_and_netrc(offline_env, tmp_path, monkeypatch) -> None:
    assert has_wandb_credentials() is False
    netrc_file = tmp_path / "netrc"
    netrc_file.write_text("machine api.wandb.ai\n  login user\n  password " + "a" * 40 + "\n")
    netrc_file.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc_file))
    monkeypatch.setenv("WANDB_BASE_URL", "https://api.wandb.ai")
    assert has_wandb_credentials() is True
    monkeypatch.setenv("WANDB_BASE_URL", "https://wandb.example.com")
    assert has_wandb_credentials() is False
    monkeypatch.setenv("WANDB_API_KEY", "b" * 40)
    assert has_wandb_credentials() is True


def test_mode_resolution(offline_env, monkeypatch) -> None:
    assert wandb_start.resolve_mode("disabled") == "disabled"
    assert wandb_start.resolve_mode(None) == "offline"  # WANDB_MODE=offline
    monkeypatch.delenv("WANDB_MODE")
    assert wandb_start.resolve_mode(None) == "offline"  # no credentials
    monkeypatch.setenv("WANDB_API_KEY", "c" * 40)
    assert wandb_start.resolve_mode(None) == "online"
    monkeypatch.setenv("WANDB_DISABLED", "true")
    assert wandb_start.resolve_mode(None) == "disabled"
    with pytest.raises(ValueError, match="'dryrun'"):
        wandb_start.resolve_mode("dryrun")


def test_disabled_mode_and_config_make_no_run(offline_env, tmp_path) -> None:
    wb = EnhancedWandBLogger.from_config({"use_wandb": False})
    assert wb.mode == "disabled" and not wb.enabled and wb.run is None
    wb.log_training_metrics(loss=1.0, step=1)
    assert wb.log_sample_table(["p"], ["g"], ["r"], [1.0], step=0) is False
    wb.finish()
    cfg = {
        "use_wandb": True,
        "wandb_project": "proj",
        "wandb_run_name": "exp-7",
        "log_samples_every": 2,
        "max_logged_samples": 1,
        "wandb_dir": str(tmp_path),
    }
    with EnhancedWandBLogger.from_config(cfg) as wb:
        assert (wb.log_samples_every, wb.max_logged_samples) == (2, 1)
    run = read_run(tmp_path / "wandb")
    assert (run.project, run.name) == ("proj", "exp-7")


@pytest.mark.integration
def test_missing_wandb_package_turns_every_method_into_a_no_op(tmp_path) -> None:
    script = f"""
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
sys.modules["wandb"] = None  # what an environment without the extra looks like
from mlx_otel.integrations.wandb_bridge import EnhancedWandBLogger
for _ in range(2):
    wb = EnhancedWandBLogger("p", "n", mode="online", dir={str(tmp_path)!r})
    assert not wb.enabled and wb.run is None
    wb.log_training_metrics(loss=0.5, step=1)
    wb.log_metrics({{"a": 1}}, step=1)
    wb.log_distribution("rewards", [1, 2], step=1)
    assert wb.log_sample_table(["p"], ["g"], ["r"], [1.0], step=0) is False
    assert wb.log_chart("c", "missing.png") is False
    assert wb.alert("t", "x") is False
    assert wb.log_checkpoint("missing") is False
    wb.log_gradients({{"l": 1.0}}, step=1)
    with wb:
        pass
    assert wb.error_counts == {{}}
print("ok")
"""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    done = processes.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
    assert done.stderr.count("pip install 'mlx-otel[wandb]'") == 1, done.stderr
    assert not list(tmp_path.iterdir())  # nothing written


# ------------------------------------------------------------------ key groups


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("loss", "train/loss"),
        ("grad_norm", "train/grad_norm"),
        ("learning_rate", "train/learning_rate"),
        ("step_duration_seconds", "train/step_duration_seconds"),
        ("steps", "train/steps"),
        ("reward_mean", "rl/reward_mean"),
        ("reward", "rl/reward"),
        ("thinking_tokens", "rl/thinking_tokens"),
        ("answer_tokens", "rl/answer_tokens"),
        ("rewards", "rl/rewards"),
        ("memory_allocated_mb", "memory/memory_allocated_mb"),
        ("peak_memory", "memory/peak_memory"),
        ("rss_bytes", "memory/rss_bytes"),
        ("kl", "custom/kl"),
        ("eval/accuracy", "eval/accuracy"),
    ],
)
def test_default_key_groups(name: str, key: str) -> None:
    assert group_key(name) == key


def test_key_groups_is_a_plain_dict_parameter() -> None:
    groups = {**DEFAULT_KEY_GROUPS, "kl": "rl", "loss": "optim/"}
    assert group_key("kl", groups) == "rl/kl"
    assert group_key("loss", groups) == "optim/loss"
    assert group_key("tokens_per_second", {}) == "custom/tokens_per_second"
    assert json.loads(json.dumps(DEFAULT_KEY_GROUPS)) == DEFAULT_KEY_GROUPS
