"""The benchmark's output: each figure beside its goal, a JSON record, a PNG chart.

A figure that misses its goal is printed as missed; the benchmark still exits 0,
because benchmarks report, they never gate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import pyplot

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Figure:
    """One reported number; `met` is None when it has no goal (or was not measured)."""

    section: str
    name: str
    value: float | None
    unit: str
    goal: str = ""
    met: bool | None = None
    note: str = ""

    def line(self) -> str:
        value = "—" if self.value is None else f"{self.value:.3g} {self.unit}".strip()
        verdict = {True: "met", False: "MISSED", None: ""}[self.met]
        goal = f"goal {self.goal}: {verdict}" if self.goal else ""
        note = f"  ({self.note})" if self.note else ""
        return f"  {self.name:<52} {value:>14}   {goal}{note}"


def goal(
    section: str,
    name: str,
    value: float,
    unit: str,
    *,
    at_most: float | None = None,
    at_least: float | None = None,
    note: str = "",
) -> Figure:
    """A figure with a bound to meet (exactly one of `at_most` / `at_least`)."""
    if at_most is not None:
        return Figure(section, name, value, unit, f"<= {at_most:g}", value <= at_most, note)
    assert at_least is not None
    return Figure(section, name, value, unit, f">= {at_least:g}", value >= at_least, note)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(fraction * len(ordered)) - 1)]


def stamp() -> str:
    """The name a run's results are written under: its UTC start, to the minute."""
    return datetime.now(UTC).strftime("%Y-%m-%d-%H%M")


def print_figures(figures: Sequence[Figure]) -> None:
    section = None
    for figure in figures:
        if figure.section != section:
            section = figure.section
            print(f"\n{section}")
        print(figure.line())


def write(
    stamp: str,
    figures: Sequence[Figure],
    raw: Mapping[str, Any],
    curve: Mapping[int, tuple[float, float]],
    helm: Mapping[str, float],
    far: tuple[float, Mapping[int, float]] | None = None,
) -> tuple[Path, Path]:
    """bench/results/<stamp>.json and .png (the fan-out curve, Helm's loops beside it, and
    `far`: the round trip and the config-demo curve of members that far away)."""
    json_path = write_json(stamp, figures, raw)
    png_path = RESULTS / f"{stamp}.png"
    _chart(curve, helm, far, png_path)
    return json_path, png_path


def write_json(stamp: str, figures: Sequence[Figure], raw: Mapping[str, Any]) -> Path:
    """bench/results/<stamp>.json: the figures as printed, and the raw measurements."""
    RESULTS.mkdir(exist_ok=True)
    data = {"figures": [asdict(f) for f in figures], "raw": raw}
    path = RESULTS / f"{stamp}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def _chart(
    curve: Mapping[int, tuple[float, float]],
    helm: Mapping[str, float],
    far: tuple[float, Mapping[int, float]] | None,
    path: Path,
) -> None:
    matplotlib.use("Agg")  # files only: the benchmark runs where there is no display
    sizes = sorted(curve)
    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    axes.plot(sizes, [curve[n][0] for n in sizes], "o-", label="Flotilla: all applied")
    axes.plot(sizes, [curve[n][1] for n in sizes], "s-", label="Flotilla: all healthy")
    if far is not None:
        rtt, healthy = far
        axes.plot(
            sorted(healthy),
            [healthy[n] for n in sorted(healthy)],
            "d--",
            label=f"Flotilla, config-demo, members {rtt * 1000:.0f} ms away: all healthy",
        )
    markers = iter("^v<>")
    for label, seconds in helm.items():
        axes.plot([16], [seconds], next(markers, "x"), markersize=9, label=f"Helm loop: {label}")
    axes.set_xscale("log", base=2)
    axes.set_xticks(sizes, [str(n) for n in sizes])
    axes.set_xlabel("member clusters (logical)")
    axes.set_ylabel("seconds from `up`")
    axes.set_title("Fan-out deploy (canary-demo unless named)")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    pyplot.close(figure)
