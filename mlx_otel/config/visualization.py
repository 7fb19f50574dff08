"""How snapshot charts look and how often they are made (a pydantic model).

This module imports neither matplotlib nor seaborn: the monitor builds a
configuration in the training process and charts render in a child process.
Unusual palettes (a matplotlib colormap, ``"ch:..."``) are checked with
seaborn only when one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["VisualizationConfig"]

#: Palettes seaborn knows by name without consulting matplotlib.
_KNOWN_PALETTES = frozenset(
    {"deep", "muted", "bright", "pastel", "dark", "colorblind", "husl", "hls"}
    | {f"{name}6" for name in ("deep", "muted", "bright", "pastel", "dark", "colorblind")}
)


class VisualizationConfig(BaseModel):
    """How snapshot charts look and how often they are made.

    Example::

        config = VisualizationConfig(output_dir=Path("./charts"), style="darkgrid",
                                     palette="husl", dpi=150, generate_every_n_steps=100)
        charts = ChartGenerator(config=config)
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    output_dir: Path = Path("./charts")
    style: Literal["darkgrid", "whitegrid", "dark", "white", "ticks"] = "darkgrid"
    palette: str = "husl"
    dpi: float = Field(150, gt=0)
    #: ``ChartGenerator.should_generate(step)`` is true every this many steps
    #: (0 disables periodic charts).
    generate_every_n_steps: int = Field(100, ge=0, strict=True)
    #: Width and height in inches of a single-panel chart; multi-panel charts
    #: keep the width and grow in height with the number of rows.
    figsize: tuple[float, float] = (12.0, 6.0)
    #: Window (in points) of the moving average drawn over raw curves.
    smoothing_window: int = Field(10, ge=1, strict=True)
    #: Seaborn plotting context and font scale.
    context: Literal["paper", "notebook", "talk", "poster"] = "notebook"
    font_scale: float = Field(1.0, gt=0)
    #: Heatmap cells carry their value up to this many metrics (beyond, the
    #: numbers would overlap).
    annotate_max_metrics: int = 15
    #: Most panels in a dashboard; further metrics are left out (and logged).
    max_dashboard_panels: int = 12
    #: Extra seaborn rc overrides, e.g. ``{"axes.titlesize": 11}``.
    rc: dict[str, Any] = Field(default_factory=dict)

    def __init__(self, output_dir: Path | str = Path("./charts"), /, **values: Any) -> None:
        # The seed passes the output folder positionally.
        super().__init__(output_dir=values.pop("output_dir", output_dir), **values)

    @field_validator("palette")
    @classmethod
    def _palette_exists(cls, palette: str) -> str:
        base = palette[:-2] if palette.endswith("_r") else palette
        if base in _KNOWN_PALETTES:
            return palette
        import seaborn as sns  # only for a palette seaborn must look up

        try:
            sns.color_palette(palette, 3)
        except (ValueError, TypeError) as error:
            raise ValueError(f"palette {palette!r} is not a seaborn palette") from error
        return palette

    @field_validator("figsize")
    @classmethod
    def _positive_size(cls, figsize: tuple[float, float]) -> tuple[float, float]:
        if not (figsize[0] > 0 and figsize[1] > 0):
            raise ValueError(f"figsize must be two positive numbers, got {figsize!r}")
        return figsize
