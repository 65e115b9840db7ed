"""``ais-wds index PREFIX...``: build the shard index (msgpack + wids descriptor) of existing tar shards."""

from __future__ import annotations

import argparse
from collections import Counter

from ..client import Client
from ..objects.ais_index import index_shards
from ..shard_index.index import build_index, save_index
from ..tar.names import shard_stem
from ..urls import parse_url


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "index", help="index existing tar shards for random access",
        description="Build a shard index (every sample's and member's byte range) for .tar shards written by any "
                    "tool, from AIS's archive listing where it can be proven exact, else by reading each shard once.")
    p.add_argument("prefixes", nargs="+", metavar="PREFIX", help="shard prefix(es), e.g. ais://bucket/train-")
    p.add_argument("-o", "--output", metavar="URL_OR_PATH",
                   help="where to write the index (default: <prefix stem>.index.msgpack beside the shards)")
    p.add_argument("--method", choices=["auto", "list", "stream"], default="auto",
                   help="auto (default): archive listing + batched header check when members average >= 64 KiB, else "
                        "stream; list: always try the listing first; stream: read every shard")
    p.add_argument("--workers", type=int, default=8, help="shards indexed in parallel (default 8)")
    p.add_argument("--no-wids", action="store_true", help="do not write the wids JSON descriptor")
    p.add_argument("--ais", action="store_true",
                   help="instead, have AIS index the shards itself (AIS 5.0's index-shard job; waits for it): reads "
                        "of a member by name (archpath, ais-wds cat shard.tar/member) then seek to it; "
                        "see docs/ais5.md for when each index is the better choice")
    p.set_defaults(func=run)


def default_output(prefix: str) -> str:
    """``ais://b/train-`` -> ``ais://b/train.index.msgpack``; ``ais://b/dir/`` -> ``ais://b/dir/shards.index.msgpack``."""
    u = parse_url(prefix)
    directory, _, base = u.path.rpartition("/")
    stem = shard_stem(base)
    return u.join(f"{directory}/{stem}.index.msgpack" if directory else f"{stem}.index.msgpack")


def run(args: argparse.Namespace) -> int:
    client = Client(args.endpoint)
    if args.ais:
        for prefix in args.prefixes:
            job, seconds = index_shards(client, prefix)
            print(f"AIS indexed the shards under {prefix} (job {job}, {seconds:.1f}s); archpath reads use it now")
        return 0
    how: Counter = Counter()
    index = build_index(args.prefixes, client, workers=args.workers, method=args.method,
                        on_shard=lambda url, method: how.update([method]))
    output = args.output or default_output(args.prefixes[0])
    location, wids = save_index(index, output, client, wids=not args.no_wids)
    print(f"indexed {len(index.shards)} shard(s), {len(index)} samples "
          f"({how['listed']} from the archive listing, {how['streamed']} streamed)")
    print(f"index: {location}")
    if wids:
        print(f"wids descriptor: {wids}")
    return 0


