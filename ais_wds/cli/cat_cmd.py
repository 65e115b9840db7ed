"""``ais-wds cat URL``: stream one object (or one shard member, or a byte range) to stdout."""

from __future__ import annotations

import argparse
import shutil
import sys

from ..client import Client
from ..objects.reader import open_object, read_member
from ._args import byte_range


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("cat", help="stream an object to stdout",
                       description="Stream an object to stdout through the resuming reader.")
    p.add_argument("url", metavar="URL", help="object URL, e.g. ais://bucket/train-000000.tar")
    p.add_argument("--archpath", help="print only this member of a shard (tar, tgz, tar.lz4, zip)")
    p.add_argument("--range", metavar="START-END", type=byte_range,
                   help="byte range, END exclusive (e.g. 0-1024)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    client = Client(args.endpoint)
    out = sys.stdout.buffer
    if args.archpath:
        out.write(read_member(args.url, args.archpath, client))
        return 0
    start, end = args.range or (0, None)
    with open_object(args.url, client, start=start, end=end) as f:
        shutil.copyfileobj(f, out, 1 << 20)
    out.flush()
    return 0
