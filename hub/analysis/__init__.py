"""Metric analysis: what Prometheus says of a canary or a `check-metrics` step, and the
verdict its measurements reach for the whole fleet."""
