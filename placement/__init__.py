"""Who gets what: topology and override policies turned into per-cluster targets.

Pure logic. Nothing here performs I/O, starts an event loop or knows a Kubernetes
client exists, so every rule can be table- and property-tested in milliseconds.
"""
