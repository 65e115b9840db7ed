"""Objects on the secure test cluster (``secure_cluster``: https + AuthN) for tests of one module."""

from __future__ import annotations

import uuid
from typing import Any, Dict, Tuple

from ais_wds import Client, write_bytes


def secure_objects(cluster: Any, prefix: str, bodies: Dict[str, bytes]) -> Tuple[Client, Dict[str, bytes]]:
    """A client with the cluster's token and CA, and ``bodies`` (name -> bytes) written to a fresh bucket
    named ``prefix-<random>``; returns the client and URL -> bytes, in the order of ``bodies``."""
    v = cluster.vars
    client = Client(v["AIS_ENDPOINT"], token=v["AIS_AUTHN_TOKEN"], ca_cert=v["AIS_CLIENT_CA"])
    bucket = f"{prefix}-{uuid.uuid4().hex[:8]}"
    client.sdk.bucket(bucket).create()
    out = {}
    for name, body in bodies.items():
        write_bytes(f"ais://{bucket}/{name}", body, client)
        out[f"ais://{bucket}/{name}"] = body
    return client, out
