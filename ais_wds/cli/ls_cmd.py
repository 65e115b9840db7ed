"""``ais-wds ls URL...``: list objects under prefixes, with sizes and totals; ``--save`` writes a listing."""

from __future__ import annotations

import argparse
import sys

from ..client import Client
from ..listing import list_objects
from ._args import human_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ls", help="list objects under one or more prefixes",
                       description="List objects under prefixes (ais://bucket/prefix, s3://..., braces expanded).")
    p.add_argument("urls", nargs="+", metavar="URL", help="prefix URL(s), or a saved .msgpack listing")
    p.add_argument("--save", metavar="FILE", help="write the listing as msgpack to FILE (for Listing.load)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the totals")
    p.add_argument("--allow-empty", action="store_true", help="do not fail when a prefix matches nothing")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = Client(args.endpoint)
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(unit=" obj", desc="listing", file=sys.stderr, leave=False)

    def on_page(count: int) -> None:
        if bar is not None:
            bar.update(count - bar.n)

    try:
        listing = list_objects(args.urls, client, allow_empty=args.allow_empty, on_page=on_page if bar else None)
    finally:
        if bar is not None:
            bar.close()
    out = sys.stdout
    if not args.quiet:
        for url, size in listing:
            out.write(f"{size:>14}  {url}\n")
    out.write(f"{len(listing)} objects, {listing.total_size} bytes ({human_size(listing.total_size)})\n")
    if args.save:
        listing.save(args.save)
        print(f"saved listing to {args.save}", file=sys.stderr)
    return 0

