"""Section 21, listing at wire speed: ``ais_wds.list_objects`` against a bare loop over AIS's msgpack pages and
the aistore SDK's ``list_objects_iter``, at 1k to 1M objects.

* the bare loop: ``requests`` GET of each list page (``Accept: application/msgpack``) + ``msgpack.unpackb``,
  nothing else (the limit: what the wire and the decoder give);
* ``ais_wds.list_objects``: the compact ``Listing`` built from the same pages (``ais_wds.objects.list_pages``);
* the SDK: ``Bucket.list_objects_iter(props="name,size")``, counting the entries.

The three run interleaved (A, B, C, A, B, C ...) in this process on buckets of ``n`` one-byte objects made once
by one AIS promote job and kept (``bench-list-<n>``); objects/s as median and best of the rounds; ratios of the
medians; ``client CPU ms``: the median CPU time of this process per listing (``time.process_time``: what the
lister itself costs; the rest of a listing's time is the cluster's, and on a loaded machine it dominates a small
listing: at 1,000 objects AIS takes 4-10 ms per page). Small listings get more rounds (``--rounds`` sets them all).
``held_bytes_per_object`` / ``peak_bytes_per_object``: tracemalloc of one ``list_objects`` call.

    AIS_ENDPOINT=... .venv/bin/python -m ais_wds_bench.sections.listing_wire [--scale S] [--sizes 1000,10000] [--rounds N]
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
import tracemalloc
from typing import Any, Callable, Dict, List

import msgpack

from ais_wds import Client
from ais_wds.listing import list_objects

from .._objects import ensure_objects
from ..report import NOT_RUN, goal

NUMBER = 21
TITLE = "Listing at wire speed: msgpack pages vs a bare loop vs the SDK"


def bare_loop(client: Client, bucket: str) -> int:
    """Objects listed by a bare loop: GET each msgpack page, ``msgpack.unpackb`` it, count its entries."""
    http = client.http
    token, uuid, n = "", "", 0
    while True:
        body = {"action": "list", "value": {"prefix": "", "props": "name,size", "flags": "0", "pagesize": 0,
                                             "uuid": uuid, "continuation_token": token}}
        resp = http.get(f"{client.endpoint}/v1/buckets/{bucket}", params={"provider": "ais"}, json=body,
                        headers={"Accept": "application/msgpack"})
        resp.raise_for_status()
        page = msgpack.unpackb(resp.content, raw=False)
        n += len(page["Entries"] or [])
        token, uuid = page["ContinuationToken"], page["UUID"]
        if not token:
            return n


def sdk_iter(client: Client, bucket: str) -> int:
    return sum(1 for _ in client.sdk.bucket(bucket).list_objects_iter(props="name,size"))


def ais_wds_list(client: Client, bucket: str) -> int:
    return len(list_objects(f"ais://{bucket}/", client))


LISTERS: Dict[str, Callable[[Client, str], int]] = {"bare loop": bare_loop, "ais_wds": ais_wds_list, "SDK": sdk_iter}


def one_size(client: Client, n: int, rounds: int) -> Dict[str, Any]:
    bucket = ensure_objects(client, n)
    rates: Dict[str, List[float]] = {name: [] for name in LISTERS}
    cpu: Dict[str, List[float]] = {name: [] for name in LISTERS}
    for name, fn in LISTERS.items():  # warm: connections, imports
        assert fn(client, bucket) == n, name
    for _ in range(rounds):
        for name, fn in LISTERS.items():
            for attempt in range(3):  # a target of the shared cluster restarting fails one listing: list again
                gc.collect()
                try:
                    c, t = time.process_time(), time.perf_counter()
                    count = fn(client, bucket)
                    rates[name].append(count / (time.perf_counter() - t))
                    cpu[name].append(time.process_time() - c)
                    break
                except Exception as e:  # noqa: BLE001 - retried, then raised
                    if attempt == 2:
                        raise
                    print(f"  {name} listing of {n} failed ({type(e).__name__}); again", file=sys.stderr)
                    time.sleep(5)
            assert count == n, (name, count, n)
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    listing = list_objects(f"ais://{bucket}/", client)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    name_chars = len(listing.urls[0]) - len(f"ais://{bucket}/")
    del listing
    row: Dict[str, Any] = {"objects": n, "name_chars": name_chars, "rounds": rounds}
    for name, values in rates.items():
        row[f"{name} objects/s median"] = statistics.median(values)
        row[f"{name} objects/s best"] = max(values)
        row[f"{name} client CPU ms"] = 1000 * statistics.median(cpu[name])
    med = {name: statistics.median(values) for name, values in rates.items()}
    row["ais_wds / bare loop"] = med["ais_wds"] / med["bare loop"]
    row["ais_wds / SDK"] = med["ais_wds"] / med["SDK"]
    row["ais_wds / SDK, client CPU"] = statistics.median(cpu["ais_wds"]) / statistics.median(cpu["SDK"])
    row["held_bytes_per_object"] = (held - base) / n
    row["peak_bytes_per_object"] = (peak - base) / n
    return row


def default_rounds(n: int) -> int:
    """Rounds per size: many where a listing takes milliseconds (the cluster's noise is larger than the gaps)."""
    return 15 if n <= 10_000 else 7 if n <= 100_000 else 3


def run(client: Client, scale: float = 1.0, sizes: Any = None, rounds: int = 0) -> Dict[str, Any]:
    if sizes is None:
        sizes = [1000, 10_000, 50_000, 100_000, 1_000_000] if scale >= 1 else \
            [1000, 10_000, 50_000] if scale >= 0.1 else [1000, 10_000]
    out: Dict[str, Any] = {}
    for n in sizes:
        try:
            out[f"{n:,} objects"] = one_size(client, n, rounds or default_rounds(n))
        except Exception as e:  # noqa: BLE001 - the other sizes still count
            out[f"{n:,} objects"] = {"objects": n, "error": f"{type(e).__name__}: {str(e)[:300]}"}
        print(f"  {n:,} objects: {json.dumps(out[f'{n:,} objects'])}", file=sys.stderr, flush=True)
    return {"listing": out}


def goals(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = (results.get("listing_wire", NOT_RUN).get("result") or {}).get("listing") or {}
    worst_bare = min((r["ais_wds / bare loop"] for r in rows.values() if "error" not in r), default=None)
    worst_sdk = min((r["ais_wds / SDK"] for r in rows.values() if "error" not in r), default=None)
    return [goal("listing: ais_wds >= 0.8x the bare msgpack loop at every size", worst_bare, 0.8),
            goal("listing: ais_wds >= 1.5x the SDK's list_objects_iter at every size", worst_sdk, 1.5)]


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scale", type=float, default=1.0)
    p.add_argument("--sizes", default="", help="comma-separated object counts (default: by --scale)")
    p.add_argument("--rounds", type=int, default=0, help="rounds at every size (default: 15 up to 10k, 7 up to "
                                                             "100k, 3 above)")
    p.add_argument("--endpoint", default=None)
    a = p.parse_args()
    result = run(Client(a.endpoint), a.scale, [int(s) for s in a.sizes.split(",")] if a.sizes else None, a.rounds)
    json.dump(result, sys.stdout, indent=1)
    print()
