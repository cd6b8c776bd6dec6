"""The real-cluster harness: local Kubernetes control planes without Docker
(clusters, controlplane, kubelet), the binaries they run, the charts and
chart servers that tests deploy from, and a Prometheus scraping the metrics the
simulated pods' apps would expose (appmetrics, prometheus). Only tests, the demo
and developers use it; nothing in hub/, placement/ or clusters/ imports it."""
