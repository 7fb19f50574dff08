"""Which files of the repository ship inside the package, as glob patterns.

The repository's ``prometheus/``, ``grafana/``, ``docs/runbooks.md`` and
``docker-compose.yml`` are the only copy of the monitoring files. A wheel
build (``hatch_build.py``) places each match at the same path under
``mlx_otel/assets/``; a checkout or an editable install reads them where they
are. Both read this list, so the two cannot disagree. It holds no imports:
the build reads it by path, without importing the package.
"""

from __future__ import annotations

__all__ = ["SHIPPED"]

#: Patterns relative to the repository root (and to ``mlx_otel/assets/`` in a wheel).
SHIPPED: tuple[str, ...] = (
    "prometheus/prometheus.yml",
    "prometheus/alertmanager.yml",
    "prometheus/agent.yml",
    "prometheus/otel-collector.yml",
    "prometheus/targets.example.json",
    "prometheus/targets/README.md",
    "prometheus/rules/*.yml",
    "prometheus/tests/*.yml",
    "grafana/dashboards/*.json",
    "grafana/provisioning/*/*.yml",
    "docs/runbooks.md",
    "docker-compose.yml",
)
