"""Driving revisions: the engine (steps in order, fan-out, gates), one target's deploy,
and the canary of a target.

It acts on clusters only through `hub.fleet` and the `clusters` package, reads charts
through `hub.charts`, and keeps every bit of state in `hub.state`; a runner holds nothing
that a restarted hub could not rebuild from the store.
"""
