"""Metric analysis: what Prometheus says of a canary or a `check-metrics` step, and the
verdict its measurements reach for the whole fleet.

Two halves with one seam, the stored `MeasurementRecord`: `prometheus` takes one
measurement (one number, or a one-line `MeasurementError` that the analysis counts as an
error), and `verdicts` judges the measurements taken so far, without I/O, so that a hub
restarted mid-analysis reaches the same verdict from the same records. What to measure,
how often and against which condition comes from the file (`hub.format.CanaryAnalysis`,
`hub.format.CheckMetricsProperties`); which clusters, and when, is the engine's.
"""

from hub.analysis.prometheus import Endpoint, MeasurementError, instant, value_of
from hub.analysis.verdicts import Limits, StepVerdict, Tally, decide, streak, tally

__all__ = [
    "Endpoint",
    "Limits",
    "MeasurementError",
    "StepVerdict",
    "Tally",
    "decide",
    "instant",
    "streak",
    "tally",
    "value_of",
]
