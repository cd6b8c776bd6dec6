"""The member clusters as the hub sees them: the registry, its prober, the watch caches
(observer), and the marks the hub puts on what it applies.

The one place that holds a client per cluster. It knows nothing of workflows: a deploy
asks it for a client or a cache, never the other way round.
"""
