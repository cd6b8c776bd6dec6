"""The real-cluster harness: local Kubernetes control planes without Docker
(clusters, controlplane, kubelet), the binaries they run, and the charts and
chart servers that tests deploy from. Only tests, the demo and developers use
it; nothing in hub/, placement/ or clusters/ imports it."""
