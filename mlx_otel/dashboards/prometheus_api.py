"""The few calls of Prometheus' HTTP API the previews need (urllib, no extra dependency)."""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from mlx_otel.dashboards.queries import DashboardError, seconds

__all__ = ["PrometheusAPI", "Series"]

Series = tuple[dict[str, str], Any, Any]  # labels, times (s), values


class PrometheusAPI:
    """The few calls of Prometheus' HTTP API the preview needs (urllib, no extra deps)."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
            raise DashboardError(
                f"--prometheus needs a URL such as http://127.0.0.1:9090, not {url!r}"
            )
        self.url = url.rstrip("/")
        self.timeout = timeout

    def get(self, path: str, **params: Any) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=self.timeout) as response:
                body = json.loads(response.read().decode())
        except urllib.error.HTTPError as exc:
            try:
                detail = json.loads(exc.read().decode()).get("error", str(exc))
            except (ValueError, OSError):
                detail = str(exc)
            raise DashboardError(f"Prometheus at {self.url} rejected {params}: {detail}") from exc
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DashboardError(
                f"cannot reach Prometheus at {self.url} ({reason}); start it (for example "
                "`docker compose up prometheus`) or pass --prometheus with its address"
            ) from exc
        if body.get("status") != "success":
            raise DashboardError(f"Prometheus at {self.url} answered {body} to {params}")
        return body["data"]

    def scrape_interval(self) -> float:
        """The global scrape interval in seconds (Grafana's ``$__rate_interval`` needs it)."""
        text = self.get("status/config").get("yaml", "")
        match = re.search(r"^\s+scrape_interval:\s*(\S+)", text, re.MULTILINE)
        return seconds(match.group(1)) if match else 15.0

    def range(self, expr: str, start: float, end: float, step: float) -> list[Series]:
        import numpy as np

        result = self.get("query_range", query=expr, start=start, end=end, step=step)["result"]
        series = []
        for item in result:
            points = item.get("values", [])
            times = np.array([float(t) for t, _ in points])
            values = np.array([float(v) for _, v in points])
            series.append((item.get("metric", {}), times, values))
        return series

    def label_values(self, label: str, metric: str, start: float, end: float) -> list[str]:
        """The values of ``label`` on series of ``metric`` between ``start`` and ``end``."""
        values = self.get(f"label/{label}/values", **{"match[]": metric, "start": start, "end": end})
        return sorted(values)

    def instant(self, expr: str, at: float) -> list[tuple[dict[str, str], float]]:
        data = self.get("query", query=expr, time=at)
        if data["resultType"] == "scalar":
            return [({}, float(data["result"][1]))]
        return [(item.get("metric", {}), float(item["value"][1])) for item in data["result"]]

