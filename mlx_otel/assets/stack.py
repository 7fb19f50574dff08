"""``mlx-otel stack init DIR``: a ready monitoring folder from the shipped files.

The folder has the repository's layout, so the compose file works as it is::

    DIR/docker-compose.yml, Dockerfile          (compose only)
    DIR/prometheus/prometheus.yml               job mlx_otel: static target + targets/*.json
    DIR/prometheus/targets/                     file_sd target files (one per job)
    DIR/prometheus/rules/*.yml, tests/*.yml     rules and their promtool tests
    DIR/prometheus/alertmanager.yml             routing to the alert sink (with its token)
    DIR/secrets/alert_sink_token                the alert sink's token (--local only)
    DIR/grafana/provisioning/, dashboards/      Grafana datasource and dashboards
    DIR/runbooks.md, README.md

With ``local=True`` every address is 127.0.0.1 (Prometheus, Alertmanager,
the alert sink and the trainer run as plain processes on one machine), no
compose file is written, and a new random token for the alert sink is written
to ``secrets/alert_sink_token`` (readable by its owner only), which both
Alertmanager and ``mlx-otel alert-sink`` read. In the compose stack the sink
writes its token into a volume Alertmanager shares.

    >>> written = init_stack(Path("monitoring"), local=True, version="0.1.0")  # doctest: +SKIP
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mlx_otel.assets import AssetError, asset_path, asset_root, shipped_files
from mlx_otel.fileio import atomic_write_text

__all__ = [
    "TOKEN_FILE",
    "LocalPorts",
    "StackError",
    "ensure_token_file",
    "init_stack",
    "local_commands",
]

#: Where the shipped alertmanager.yml reads the alert sink's token (compose).
_COMPOSE_TOKEN_FILE = "/etc/alertmanager/secrets/alert_sink_token"
#: The token file of a --local stack, relative to its folder.
TOKEN_FILE = "secrets/alert_sink_token"


class StackError(AssetError):
    """The stack folder cannot be written as asked."""


@dataclass(frozen=True)
class LocalPorts:
    """Ports of a one-machine stack (all on 127.0.0.1)."""

    metrics: int = 9464
    prometheus: int = 9090
    alertmanager: int = 9093
    alert_sink: int = 9095


#: The compose file's service addresses and what they become with --local.
_COMPOSE_ADDRESSES = {
    "trainer:9464": "metrics",
    "alertmanager:9093": "alertmanager",
    "alert-sink:9095": "alert_sink",
    "prometheus:9090": "prometheus",
}

_DOCKERFILE = """\
# The image of the stack's `trainer` (the MLX demo run) and `alert-sink`
# services, written by `mlx-otel stack init`. It installs mlx-otel {version}
# from the package index, or from a wheel put into wheels/ beside this file.
FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY wheels/ /wheels/
RUN pip install --no-cache-dir --find-links /wheels "mlx-otel[charts]=={version}"

# /secrets: where `alert-sink --create-token` writes its token (a volume).
RUN groupadd --gid 10001 mlx && useradd --create-home --uid 10001 --gid 10001 mlx \
    && mkdir -p /outputs /secrets && chown mlx:mlx /outputs /secrets
USER mlx
WORKDIR /outputs
EXPOSE 9464 9095
ENTRYPOINT ["mlx-otel"]
CMD ["demo", "--host", "0.0.0.0", "--port", "9464", "--output-dir", "/outputs"]
"""

_README_COMPOSE = """\
# mlx_otel monitoring stack

Written by `mlx-otel stack init`. Start it with

    docker compose up --build

Grafana: http://127.0.0.1:3000 (dashboards in the "MLX" folder),
Prometheus: http://127.0.0.1:9090, Alertmanager: http://127.0.0.1:9093.
The `trainer` service is the mlx_otel demo; for your own training, list its
metrics endpoints in prometheus/targets/*.json (Prometheus re-reads them).
The alert sink takes only posts with its bearer token, which it writes into
the `alert-sink-secrets` volume on first start; Alertmanager reads it there.

Check the configuration and the rules:

    promtool check config prometheus/prometheus.yml
    promtool test rules prometheus/tests/*.yml

What to do when an alert fires: runbooks.md.
"""

_README_LOCAL = """\
# mlx_otel monitoring on one machine

Written by `mlx-otel stack init --local`: every address is 127.0.0.1.
Start each in its own terminal, from this folder:

{commands}

Prometheus: http://127.0.0.1:{ports.prometheus}, Alertmanager: http://127.0.0.1:{ports.alertmanager}.
For your own training, serve its metrics on port {ports.metrics} or list its
endpoints in prometheus/targets/*.json (Prometheus re-reads them; the
exporter writes them there with `exporter.file_sd_dir` set to that folder).
The alert sink takes only posts with the bearer token in {token_file}
(a new random one; Alertmanager sends it, see prometheus/alertmanager.yml).
Grafana (optional) provisions the dashboards and this Prometheus when started
from here with `GF_PATHS_PROVISIONING=$PWD/grafana/provisioning grafana server`
(add `--homepath` where your installation needs it).

Check the configuration and the rules:

    promtool check config prometheus/prometheus.yml
    promtool test rules prometheus/tests/*.yml

What to do when an alert fires: runbooks.md.
"""


def local_commands(ports: LocalPorts = LocalPorts()) -> list[str]:
    """The commands that start a ``--local`` stack, run from its folder."""
    return [
        "prometheus --config.file=prometheus/prometheus.yml --storage.tsdb.path=data/prometheus "
        f"--web.listen-address=127.0.0.1:{ports.prometheus}",
        # Without --cluster.listen-address= Alertmanager gossips on 0.0.0.0:9094.
        "alertmanager --config.file=prometheus/alertmanager.yml --storage.path=data/alertmanager "
        f"--web.listen-address=127.0.0.1:{ports.alertmanager} --cluster.listen-address=",
        f"mlx-otel alert-sink --port {ports.alert_sink} --bearer-token-file {TOKEN_FILE}",
        f"mlx-otel demo --port {ports.metrics} --linger 600",
    ]


def _shipped_files() -> Iterator[tuple[Path, str]]:
    """(source, path in the stack folder) of every shipped file the stack uses."""
    root = asset_root()
    for relative in shipped_files():
        if relative.split("/")[0] not in ("prometheus", "grafana"):
            continue
        if relative == "prometheus/agent.yml":
            continue  # one per training node, not part of this folder
        yield root / relative, relative
    yield asset_path("docs", "runbooks.md"), "runbooks.md"


def _localise(relative: str, text: str, directory: Path, ports: LocalPorts) -> str:
    addresses = {
        old: f"127.0.0.1:{getattr(ports, field)}" for old, field in _COMPOSE_ADDRESSES.items()
    }
    if relative.endswith(".yml") and not relative.startswith("prometheus/tests/"):
        for old, new in addresses.items():
            text = text.replace(old, new)
    if relative == "prometheus/alertmanager.yml":
        text = text.replace(_COMPOSE_TOKEN_FILE, str(directory / TOKEN_FILE))
    if relative == "grafana/provisioning/dashboards/provider.yml":
        text = text.replace("/var/lib/grafana/dashboards", str(directory / "grafana" / "dashboards"))
    if relative in ("prometheus/prometheus.yml", "prometheus/alertmanager.yml") or (
        relative.startswith("grafana/provisioning/")
    ):
        header = (
            "# Written by `mlx-otel stack init --local`: no docker compose here. Every\n"
            "# compose service address the text below speaks of is replaced by\n"
            "# 127.0.0.1 and the ports given, and Prometheus, Alertmanager and Grafana\n"
            "# read this folder in place (nothing mounts it).\n"
        )
        text = header + text
    return text


def _check_local(files: dict[str, str]) -> None:
    """A compose host name left in a --local file would fail later and far away."""
    for relative, text in files.items():
        if relative.startswith("prometheus/tests/") or not relative.endswith(".yml"):
            continue
        lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
        for address in _COMPOSE_ADDRESSES:
            if any(address in line for line in lines):
                raise StackError(
                    f"{relative} still names {address} after localising; this is a bug of "
                    "mlx-otel stack init, please report it"
                )


def ensure_token_file(path: Path, mode: int = 0o600) -> str:
    """The bearer token in ``path``, written there first (random, ``mode``) if missing."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise StackError(f"cannot read the token file {path}: {exc.strerror}") from None
    if not token:
        raise StackError(f"the token file {path} is empty")
    return token


def init_stack(
    directory: Path,
    *,
    local: bool = False,
    force: bool = False,
    ports: LocalPorts | None = None,
    version: str,
) -> list[Path]:
    """Write the monitoring folder into ``directory``; return the files written.

    A non-empty ``directory`` is refused unless ``force`` (then the stack's
    files are overwritten and other files are left alone). ``ports`` (only
    with ``local``) sets the 127.0.0.1 ports; ``version`` is the mlx-otel
    release the compose stack's Dockerfile installs.
    """
    directory = Path(directory).resolve()
    if ports is not None and not local:
        raise StackError("ports can be chosen only for a --local stack (compose fixes them)")
    ports = ports or LocalPorts()
    if directory.exists() and not directory.is_dir():
        raise StackError(f"{directory} is a file, not a folder; pick another DIR")
    if directory.is_dir() and any(directory.iterdir()) and not force:
        raise StackError(
            f"{directory} is not empty; pick an empty or new folder, or pass --force to "
            "overwrite the stack's files in it (other files are kept)"
        )
    files: dict[str, str] = {}
    for source, relative in _shipped_files():
        text = source.read_text()
        files[relative] = _localise(relative, text, directory, ports) if local else text
    if local:
        _check_local(files)
        commands = "\n".join(f"    {c}" for c in local_commands(ports))
        files["README.md"] = _README_LOCAL.format(
            commands=commands, ports=ports, token_file=TOKEN_FILE
        )
    else:
        files["docker-compose.yml"] = asset_path("docker-compose.yml").read_text()
        files["Dockerfile"] = _DOCKERFILE.format(version=version)
        files["wheels/README.md"] = "Put an mlx_otel wheel here to build the image from it.\n"
        files["README.md"] = _README_COMPOSE
    written = []
    for relative, text in files.items():
        target = directory / relative
        atomic_write_text(target, text)
        written.append(target)
    if local:
        # Kept when it exists (--force): a running sink keeps its token.
        ensure_token_file(directory / TOKEN_FILE)
        written.append(directory / TOKEN_FILE)
    (directory / "prometheus" / "targets").mkdir(parents=True, exist_ok=True)
    return written
