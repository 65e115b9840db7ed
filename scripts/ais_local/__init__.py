"""scripts/ais-local's implementation: a local AIStore cluster with optional cloud-backend
emulators, a remote cluster, authn and TLS. Standard library only."""
