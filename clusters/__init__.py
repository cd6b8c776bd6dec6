"""Everything that talks to one member cluster: credentials, client, apply, health, watch.

Never imports `hub`: callers hand this package plain data (a kubeconfig, manifests),
so a cluster operation can be reasoned about without knowing what an Application is.
"""
