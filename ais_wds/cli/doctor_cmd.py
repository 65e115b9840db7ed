"""``ais-wds doctor [URL...]``: check the endpoint, token, CA, cluster and (for each URL) the shards;
one OK / WARN / FAIL line per check, each FAIL with the action to take; ``--json``; exit 0 when nothing
failed, 1 otherwise. Never shows a token."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Dict

from ..client import Client
from ..doctor import diagnose, failed
from ..errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the endpoint, token, CA, cluster and shards; say what to fix",
                       description="Check a setup: TLS (CA, host name), the endpoint and its AIS version, the "
                                   "token (present, accepted, expiry), cluster health, direct reads to targets; "
                                   "for each URL: listing rate, GET throughput vs a raw read, a few shards (valid "
                                   "tar, samples, sizes, compression), the shard index. Exit 0 when nothing "
                                   "failed, 1 otherwise.")
    p.add_argument("urls", nargs="*", metavar="URL", help="shard prefix(es) to check, e.g. ais://bucket/train-")
    p.add_argument("--json", action="store_true", help="print the checks as JSON")
    p.add_argument("--ca-cert", metavar="FILE", help="CA bundle for an https endpoint (default: $AIS_CLIENT_CA)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings: Dict[str, Any] = {"retry_seconds": 5.0}
    if args.ca_cert:
        settings["ca_cert"] = args.ca_cert
    try:
        client = Client(args.endpoint, **settings)
    except ConfigError as e:
        return _config_failed(args, str(e), getattr(e, "hint", "") or "fix the setting named above")
    checks = diagnose(client, args.urls)
    if args.json:
        json.dump({"endpoint": client.endpoint, "ok": not failed(checks), "checks": [c.to_dict() for c in checks]},
                  sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        print(f"ais-wds doctor: {client.endpoint}")
        width = min(max(len(c.name) for c in checks), 24)
        for c in checks:
            print(f"{c.status:<4}  {c.name:<{width}}  {c.detail}")
            if c.action:
                print(f"{'':<4}  {'':<{width}}  -> {c.action}")
        n = {s: sum(1 for c in checks if c.status == s) for s in ("OK", "WARN", "FAIL", "SKIP")}
        print(f"{n['OK']} ok, {n['WARN']} warning(s), {n['FAIL']} failed, {n['SKIP']} skipped")
    return 1 if failed(checks) else 0


def _config_failed(args: argparse.Namespace, detail: str, action: str) -> int:
    if args.json:
        print(json.dumps({"ok": False, "checks": [{"name": "config", "status": "FAIL", "detail": detail,
                                                   "action": action}]}, indent=1))
    else:
        print(f"FAIL  config  {detail}\n            -> {action}")
    return 1
