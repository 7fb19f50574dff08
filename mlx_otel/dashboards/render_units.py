"""How the preview writes values and series names, the way Grafana does.

A panel's unit (``bytes``, ``s``, ``percentunit``...) decides the scale of
its axis and the text of its numbers (``1.5 GiB``, ``2 hours``, ``42%``);
a target's ``legendFormat`` (``{{kind}} {{run_id}}``) names its series. Kept
apart from the drawing so both can be checked without a figure.

    >>> format_value(1.5 * 1024**3, "bytes"), format_value(7200, "s")
    ('1.5 GiB', '2 hours')
    >>> legend_text("{{kind}} {{run_id}}", {"kind": "answer", "run_id": "r"})
    'answer r'
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

__all__ = ["DURATION_TICKS", "GRAFANA_COLOURS", "Scale", "bucket_bound", "format_value",
           "legend_text", "unit_scale"]  # fmt: skip

#: Grafana's named colours, so stat panels look as they do in Grafana.
GRAFANA_COLOURS = {"green": "#37872d", "orange": "#ff9830", "red": "#e02f44", "blue": "#3274d9"}

#: Ticks of a logarithmic duration axis: a second, a minute ... a century.
DURATION_TICKS = (1, 60, 3600, 86400, 604800, 2592000, 31536000, 3153600000)


@dataclass(frozen=True)
class Scale:
    """How values of a Grafana unit are shown: divided by ``factor``, labelled ``label``."""

    factor: float
    label: str


def unit_scale(unit: str, magnitude: float) -> Scale:
    """The scale Grafana would pick for values around ``magnitude`` in ``unit``."""
    magnitude = abs(magnitude) if math.isfinite(magnitude) else 0.0
    if unit in ("bytes", "Bps"):
        per_second = "/s" if unit == "Bps" else ""
        for power, prefix in ((4, "TiB"), (3, "GiB"), (2, "MiB"), (1, "KiB")):
            if magnitude >= 1024**power:
                return Scale(1024.0**power, prefix + per_second)
        return Scale(1.0, "B" + per_second)
    if unit == "s":
        for factor, name in ((31536000, "years"), (86400, "days"), (3600, "hours"), (60, "min")):
            if magnitude >= 2 * factor:
                return Scale(float(factor), name)
        if 0 < magnitude < 1:
            return Scale(0.001, "ms")
        return Scale(1.0, "s")
    if unit == "percentunit":
        return Scale(0.01, "%")
    if unit == "ops":
        return Scale(1.0, "ops/s")
    if unit.startswith("suffix:"):
        return Scale(1.0, unit.split(":", 1)[1].strip())
    return Scale(1.0, "")


def format_value(value: float, unit: str) -> str:
    """One value as text with its unit, e.g. ``1.5 GiB``, ``3.2 hours``, ``2.0e-04``."""
    if not math.isfinite(value):
        return str(value)
    if unit == "sci":
        return f"{value:.2e}"
    scale = unit_scale(unit, value)
    text = f"{value / scale.factor:.3g}"
    return f"{text} {scale.label}".strip() if scale.label not in ("%",) else f"{text}%"


def legend_text(template: str, labels: dict[str, str]) -> str:
    """Grafana's ``{{label}}`` legend templating, with runs of blanks collapsed."""
    text = re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), template)
    text = " ".join(text.split())
    if text:
        return text
    name = labels.get("__name__", "")
    rest = ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
    return f"{name}{{{rest}}}" if rest else name or "value"


def bucket_bound(labels: dict[str, str]) -> float:
    """The upper bound (``le``) of a histogram bucket series; +inf when it has none."""
    try:
        return float(labels.get("le", "inf"))
    except ValueError:
        return math.inf
