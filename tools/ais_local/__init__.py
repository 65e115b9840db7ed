"""The local-cluster launcher behind scripts/ais-local: a real AIStore cluster on 127.0.0.1 with
optional cloud-backend emulators, a remote cluster, authn and TLS. Standard library only.

Run it as `scripts/ais-local ...` (any python3) or `python -m ais_local ...` (the repo's .venv);
README.md next to this file says how it works and how to extend it.
"""
