"""How snapshot charts look (:class:`ChartStyle`) and, for a standalone
:class:`~mlx_otel.ChartGenerator`, where they go and how often (:class:`VisualizationConfig`).

A monitor reads the style from its ``charts:`` section and keeps one chart
cadence, ``monitoring.generate_charts_every`` (the seed's YAML key); the
folder is ``<monitoring.output_dir>/charts``. ``VisualizationConfig`` adds
the seed's ``output_dir`` and ``generate_every_n_steps`` for code that draws
charts itself; a monitor sets that cadence from ``generate_charts_every``, so
the two never disagree.

This module imports neither matplotlib nor seaborn: the monitor builds a
configuration in the training process and charts render in a child process.
Unusual palettes (a matplotlib colormap, ``"ch:..."``) are checked with
seaborn only when one is given.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["ChartStyle", "VisualizationConfig"]

#: Palettes seaborn knows by name without consulting matplotlib.
_KNOWN_PALETTES = frozenset(
    {"deep", "muted", "bright", "pastel", "dark", "colorblind", "husl", "hls"}
    | {f"{name}6" for name in ("deep", "muted", "bright", "pastel", "dark", "colorblind")}
)


class ChartStyle(BaseModel):
    """How snapshot charts look: the ``charts:`` section of a monitor's configuration.

    Example (YAML, or ``MLX_OTEL_CHARTS__DPI=100``)::

        charts:
          style: whitegrid
          palette: colorblind
          dpi: 100
          figsize: [10, 5]
    """

    model_config = ConfigDict(validate_assignment=True, extra="forbid")

    style: Literal["darkgrid", "whitegrid", "dark", "white", "ticks"] = "darkgrid"
    palette: str = "husl"
    dpi: float = Field(150, gt=0)
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


class VisualizationConfig(ChartStyle):
    """A chart style plus where charts are written and how often (the seed's class).

    Example::

        config = VisualizationConfig(output_dir=Path("./charts"), style="darkgrid",
                                     palette="husl", dpi=150, generate_every_n_steps=100)
        charts = ChartGenerator(config=config)
    """

    output_dir: Path = Path("./charts")
    #: ``ChartGenerator.should_generate(step)`` is true every this many steps
    #: (0 disables periodic charts). In a monitor it is
    #: ``monitoring.generate_charts_every``.
    generate_every_n_steps: int = Field(100, ge=0, strict=True)

    def __init__(self, output_dir: Path | str = Path("./charts"), /, **values: Any) -> None:
        # The seed passes the output folder positionally.
        values["output_dir"] = values.pop("output_dir", output_dir)
        super().__init__(**values)

    @classmethod
    def from_style(
        cls, style: ChartStyle, output_dir: Path | str, generate_every_n_steps: int
    ) -> VisualizationConfig:
        """The configuration a monitor's chart sink draws with: its ``charts:`` style,
        its folder and its one cadence (``monitoring.generate_charts_every``).

        >>> config = VisualizationConfig.from_style(ChartStyle(dpi=50), "out/charts", 10)
        >>> config.dpi, config.output_dir.as_posix(), config.generate_every_n_steps
        (50.0, 'out/charts', 10)
        """
        return cls(
            output_dir,
            generate_every_n_steps=generate_every_n_steps,
            **style.model_dump(include=set(ChartStyle.model_fields)),
        )
