"""Config files: the seed's YAML loads unchanged; mistakes are named."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mlx_otel.config import ConfigWarning, MonitorConfig, load_config
from mlx_otel.errors import ConfigError
from tests import processes

SEED_YAML = """\
monitoring:
  # Enable WandB logging
  use_wandb: true
  wandb_project: "mlx-rl-trainer"
  wandb_entity: "your-username"
  wandb_run_name: "experiment-001"

  # Logging frequency
  log_samples_every: 5
  max_logged_samples: 20

  # Chart generation
  generate_charts_every: 100
  generate_at_checkpoints: true

# Trainer configuration
trainer:
  # Memory safety
  memory_safety_threshold_mb: 8000

  # Statistics
  log_memory_usage: true
  reward_smoothing_window: 10
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_seed_yaml_loads_unchanged(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, SEED_YAML), env={})
    assert config.monitoring.use_wandb is True
    assert config.monitoring.wandb_entity == "your-username"
    assert config.monitoring.log_samples_every == 5
    assert config.trainer.memory_safety_threshold_mb == 8000
    assert config.exporter.host == "127.0.0.1" and config.exporter.port == 9464
    # The seed's spelling of the loader works too.
    assert MonitorConfig.load_from_yaml(write(tmp_path, SEED_YAML), env={}) == config


def test_exporter_section(tmp_path: Path) -> None:
    text = SEED_YAML + "exporter:\n  host: 0.0.0.0\n  port: 9500\n"
    config = load_config(write(tmp_path, text), env={})
    assert (config.exporter.host, config.exporter.port) == ("0.0.0.0", 9500)


def test_unknown_key_names_key_location_and_allowed_keys(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_YAML.replace("log_samples_every", "log_sample_every"))
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert "monitoring.log_sample_every" in message
    assert str(path) in message
    assert "log_samples_every" in message  # the allowed keys are listed


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    path = write(tmp_path, "exporter:\n  port: ninety\n")
    with pytest.raises(ConfigError, match=r"exporter\.port.*'ninety'"):
        load_config(path, env={})


def test_bad_choice_lists_allowed_values(tmp_path: Path) -> None:
    path = write(tmp_path, "monitoring:\n  wandb_mode: sometimes\n")
    with pytest.raises(ConfigError, match=r"monitoring\.wandb_mode.*'online'.*'offline'"):
        load_config(path, env={})


def test_environment_overrides_file(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_YAML)
    config = load_config(path, env={"MLX_OTEL_EXPORTER__PORT": "9999", "MLX_OTEL_TRAINER__LOG_MEMORY_USAGE": "false"})
    assert config.exporter.port == 9999
    assert config.trainer.log_memory_usage is False
    with pytest.raises(ConfigError, match="MLX_OTEL_EXPORTER__PORTT"):
        load_config(path, env={"MLX_OTEL_EXPORTER__PORTT": "1"})


def test_a_misspelt_section_in_a_variable_is_refused_naming_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, SEED_YAML)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={"MLX_OTEL_EXPORTR__PORT": "9500"})
    message = str(info.value)
    assert "MLX_OTEL_EXPORTR__PORT" in message
    assert "did you mean MLX_OTEL_EXPORTER__PORT?" in message
    assert "exporter, monitoring, rl, trainer" in message


def test_a_variable_close_to_a_key_is_warned_about_and_others_are_left_alone(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, SEED_YAML)
    with pytest.warns(ConfigWarning, match="MLX_OTEL_EXPORTER_PORT .*did you mean MLX_OTEL_EXPORTER__PORT"):
        config = load_config(path, env={"MLX_OTEL_EXPORTER_PORT": "9500"})
    assert config.exporter.port == 9464  # ignored, as the warning says
    others = {
        "MLX_OTEL_RUN_ID": "grpo-1",
        "MLX_OTEL_ALERT_SINK_TOKEN": "s3cret",
        "MLX_OTEL_SOMETHING_ELSE": "1",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_config(path, env=others).exporter.port == 9464


def test_an_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    path = write(tmp_path, "exporter:\n  max_layers_series: 8\n")
    with pytest.raises(ConfigError, match="did you mean 'max_layer_series'"):
        load_config(path, env={})
    path = write(tmp_path, "exportr:\n  port: 1\n")
    with pytest.raises(ConfigError, match="did you mean 'exporter'"):
        load_config(path, env={})
    with pytest.raises(ConfigError, match="did you mean 'port'"):
        load_config(write(tmp_path, SEED_YAML), env={"MLX_OTEL_EXPORTER__PORTT": "1"})


def test_missing_file_and_invalid_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", env={})
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "monitoring: [\n"), env={})


def test_seed_style_object_with_sections() -> None:
    class ExperimentConfig:
        monitoring = {"use_wandb": False, "log_samples_every": 7}
        trainer = {"memory_safety_threshold_mb": 1234}

    config = load_config(ExperimentConfig(), env={})
    assert config.monitoring.log_samples_every == 7
    assert config.trainer.memory_safety_threshold_mb == 1234


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return processes.run(
        [sys.executable, "-m", "mlx_otel", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.integration
def test_check_config_command(tmp_path: Path) -> None:
    good = run_cli("check-config", str(write(tmp_path, SEED_YAML)))
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad = run_cli("check-config", str(write(tmp_path, "trainer:\n  memory_safety_threshold: 1\n")))
    assert bad.returncode == 1
    assert "trainer.memory_safety_threshold" in bad.stderr
    assert "did you mean 'memory_safety_threshold_mb'?" in bad.stderr
