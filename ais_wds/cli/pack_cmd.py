"""``ais-wds pack SRC... DST_PATTERN``: pack objects into WebDataset shards (thin over :func:`ais_wds.pack.pack`)."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any, List, Optional, Tuple

from ..client import Client
from ..errors import ConfigError
from ..pack import PackOptions, PackReport, Plan, job_locations, pack, plan_pack
from ..pack.plan import PlannedShard
from ._args import human_size


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pack", help="pack objects into WebDataset tar shards",
        description="Group objects under SRC prefixes into samples (by sample key) and write them as tar shards "
                    "named by DST_PATTERN (ais://dst/train-%%06d.tar or ais://dst/train-{000000..000099}.tar), "
                    "plus a shard index (msgpack) and a wids descriptor.")
    p.add_argument("paths", nargs="+", metavar="SRC... DST_PATTERN", help="source prefix(es), then the shard template")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--shard-size", default="256MiB", help="target shard size, e.g. 256MiB, 1GB (default 256MiB)")
    size.add_argument("--samples-per-shard", type=int, metavar="N", help="fixed number of samples per shard")
    p.add_argument("--key", default="wds", metavar="RULE",
                   help="sample key: wds (name up to the first dot of the file name; default), stem (name minus "
                        "the last extension), or a regex with one group")
    p.add_argument("--exts", default="", help="comma-separated extensions every sample should have, e.g. jpg,cls")
    p.add_argument("--missing-extension", default="warn", choices=["ignore", "warn", "abort", "exclude"],
                   help="what to do with samples lacking one of --exts, and objects without extension (default warn)")
    p.add_argument("--shuffle", type=int, metavar="SEED", help="shuffle the sample order with this seed")
    p.add_argument("--strip-prefix", action="store_true",
                   help="member names relative to the directory of the source prefix")
    p.add_argument("--mtime", type=int, default=0, help="integer mtime of every member (default 0: reproducible)")
    p.add_argument("--dry-run", action="store_true", help="print the plan; write nothing")
    p.add_argument("--show-keys", action="store_true", help="with --dry-run: list the sample keys of every shard")
    p.add_argument("--engine", default="auto", choices=["auto", "client", "cluster"],
                   help="auto (default): cluster when source and destination are ais:// buckets of this AIS "
                        "cluster, members keep their object names and average at most 128 KiB (larger ones pack "
                        "faster with the client engine), else client; cluster: AIS assembles each "
                        "shard in plan order (an archive job when its members share one target, else get-batch "
                        "streamed into the upload; cloud sources are prefetched into AIS first), every header "
                        "checked; client: each member is fetched into this process and written (honours --mtime; "
                        "see docs/pack.md)")
    p.add_argument("--workers", type=int, default=16, help="parallel GETs (default 16)")
    p.add_argument("--parallel-shards", type=int, help="shards uploaded at once (default workers/4)")
    p.add_argument("--resume", action="store_true", help="write only the shards that do not exist yet")
    p.add_argument("--overwrite", action="store_true", help="replace existing shards")
    p.add_argument("--part", default="0/1", metavar="I/N", help="write only shards I, I+N, I+2N, ... (N machines)")
    p.add_argument("--index", metavar="URL", help="where to write the shard index (default <stem>.index.msgpack)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def _part(text: str) -> Tuple[int, int]:
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"--part must look like I/N (e.g. 0/3), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--part {text}: need 0 <= I < N")
    return i, n


def run(args: argparse.Namespace) -> int:
    if len(args.paths) < 2:
        raise ConfigError("pack needs at least one source prefix and a destination pattern",
                          hint="e.g. ais-wds pack ais://src/train/ 'ais://dst/train-%06d.tar'")
    sources, dst = args.paths[:-1], args.paths[-1]
    client = Client(args.endpoint)
    exts = tuple(e for e in args.exts.split(",") if e.strip())
    options = PackOptions(shard_size=args.shard_size, samples_per_shard=args.samples_per_shard, key_rule=args.key,
                          exts=exts, missing_extension=args.missing_extension, shuffle_seed=args.shuffle,
                          strip_prefix=args.strip_prefix, mtime=args.mtime, workers=args.workers,
                          parallel_shards=args.parallel_shards, resume=args.resume, overwrite=args.overwrite,
                          part=_part(args.part), index=args.index, engine=args.engine)
    plan = plan_pack(sources, dst, client, options=options)
    if args.dry_run:
        _print_plan(plan, dst, options.index, options.part, show_keys=args.show_keys)
        return 1 if plan.problems() else 0
    bar = _ProgressBar(enabled=not args.no_progress and sys.stderr.isatty())
    try:
        report = pack(sources, dst, client, options, plan=plan, progress=bar.update if bar.enabled else None,
                      on_start=bar.start if bar.enabled else None)
    finally:
        bar.close()
    _print_report(report)
    return 0


class _ProgressBar:
    """tqdm bar over the member bytes of the shards being written: shows MB/s, ETA and samples."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None
        self._samples = 0
        self._lock = threading.Lock()

    def start(self, shards: List[PlannedShard]) -> None:
        from tqdm import tqdm

        self._samples = sum(len(s.samples) for s in shards)
        total = sum(x.data_size for s in shards for x in s.samples)
        self._bar = tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc="packing",
                         file=sys.stderr)

    def update(self, samples: int, nbytes: int) -> None:
        with self._lock:
            if self._bar is not None:
                self._bar.set_postfix_str(f"{samples}/{self._samples} samples", refresh=False)
                self._bar.update(nbytes - self._bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()



def _spread(values: List[int], fmt: Any = str) -> str:
    if not values:
        return "-"
    return f"min {fmt(min(values))}, avg {fmt(sum(values) / len(values))}, max {fmt(max(values))}"


def _print_plan(plan: Plan, dst: str, index: Optional[str], part: Tuple[int, int], *, show_keys: bool) -> None:
    out = sys.stdout
    shards = plan.shards
    index_url, wids_url, _ = job_locations(dst, index)
    out.write(f"plan {plan.fingerprint()}: {len(shards)} shards, {plan.num_samples} samples, {plan.num_members} "
              f"files, {human_size(plan.total_size)} ({human_size(plan.data_size)} of data)\n")
    out.write(f"  shard size:        {_spread([s.size for s in shards], human_size)}\n")
    out.write(f"  samples per shard: {_spread([len(s.samples) for s in shards], lambda v: f'{v:.0f}')}\n")
    if part[1] > 1:
        mine = plan.part(*part)
        out.write(f"  part {part[0]}/{part[1]}: {len(mine)} shards, {human_size(sum(s.size for s in mine))}\n")
    out.write(f"  index: {index_url}\n  wids descriptor: {wids_url}\n")
    if plan.oversize_samples:
        out.write(f"  {plan.oversize_samples} sample(s) larger than the shard size (one shard each)\n")
    if plan.unkeyed:
        out.write(f"  {len(plan.unkeyed)} object(s) without sample key or extension, skipped: "
                  f"{', '.join(plan.unkeyed[:5])}{' ...' if len(plan.unkeyed) > 5 else ''}\n")
    if plan.incomplete:
        out.write(f"  {len(plan.incomplete)} sample(s) missing an extension, e.g. "
                  f"{', '.join(f'{k} (no {chr(47).join(m)})' for k, m in plan.incomplete[:5])}\n")
    if plan.excluded_samples or plan.dropped_members:
        out.write(f"  excluded: {plan.excluded_samples} incomplete sample(s), {plan.dropped_members} extra file(s)\n")
    if plan.conflicts:
        out.write(f"  {len(plan.conflicts)} KEY CONFLICT(S):\n")
        for c in plan.conflicts[:20]:
            out.write(f"    {c.key}: {c.reason}: {', '.join(c.urls[:4])}\n")
    for problem in plan.problems():
        out.write(f"  cannot pack: {problem}\n")
    limit = len(shards) if show_keys or len(shards) <= 25 else 20
    for shard in shards[:limit]:
        out.write(f"{shard.url}\t{human_size(shard.size)}\t{len(shard.samples)} samples\n")
        if show_keys:
            for sample in shard.samples:
                out.write(f"  [{sample.key}] " + " ".join(m.name for m in sample.members) + "\n")
    if limit < len(shards):
        out.write(f"... {len(shards) - limit} more shards (--show-keys lists all)\n")


def _print_report(report: PackReport) -> None:
    rate = report.bytes_per_second / 1e6
    print(f"wrote {len(report.written)} shard(s), skipped {len(report.skipped)} existing; {report.samples} samples, "
          f"{human_size(report.bytes)} in {report.seconds:.1f}s ({rate:.1f} MB/s), {report.engine} engine")
    if report.engine_note:
        print(f"cluster engine not used: {report.engine_note}")
    if report.engine == "cluster":
        print(f"cluster engine: {len(report.archived)} shard(s) by AIS archive jobs, {len(report.batched)} by AIS "
              f"get-batch ({len(report.rebuilt)} of them after an archive job came back in another member order)")
        if report.by_client:
            print(f"cluster engine: {len(report.by_client)} shard(s) built by the client engine after their get-batch "
                  "replies kept breaking (see the warnings above)")
    if report.index_url:
        print(f"index: {report.index_url}\nwids descriptor: {report.wids_url}")
    else:
        print("index: not written yet (other parts are still missing; the last part to finish writes it)")
