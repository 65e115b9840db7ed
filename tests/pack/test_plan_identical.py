"""The planner's grouping is an implementation detail: on a listing that mixes every case (several
extensions, upper-case duplicates, unkeyed names, raw keys that collide after dot replacement, missing
extensions, non-ASCII names, oversize samples, input out of key order) every key rule and option gives
exactly the plan the per-key-object planner of commit fdc50f2 gave (digests recorded from it)."""

from __future__ import annotations

import hashlib
import random

import pytest

from ais_wds.pack.plan import KeyRule, PackOptions, make_plan, source_objects


def mixed_objects():
    names = []
    for i in range(400):
        d = f"n{i % 7}"
        names += [f"{d}/img-{i:05d}.jpg", f"{d}/img-{i:05d}.cls"]
        if i % 3 == 0:
            names.append(f"{d}/img-{i:05d}.seg.png")
        if i % 11 == 0:
            names.append(f"{d}/img-{i:05d}.JPG")  # same extension in another case: a conflict
        if i % 13 == 0:
            names.append(f"{d}/img.{i:05d}.v2.jpg")  # stem: raw 'img.NNNNN.v2' -> written 'img_NNNNN_v2'
            names.append(f"{d}/img_{i:05d}_v2.jpg")  # ... and this raw key is already 'img_NNNNN_v2'
        if i % 17 == 0:
            names.append(f"{d}/noext-{i}")  # no extension: unkeyed
            names.append(f"{d}/.hidden-{i}")
        if i % 19 == 0:
            names.append(f"d/名前-{i}.txt")
            names.append(f"d/épreuve-{i}.v2.jpg")
    names.append("big/huge.bin")
    rng = random.Random(7)
    rng.shuffle(names)  # input order is not key order
    sizes = [(len(n) * 37) % 5000 + (3 << 20 if n.startswith("big/") else 0) for n in names]
    return source_objects("ais://src/", [f"ais://src/{n}" for n in names], sizes)


def digest(plan) -> str:
    h = hashlib.sha256()
    for shard in plan.shards:
        h.update(repr((shard.index, shard.url, shard.size, shard.num_samples)).encode())
        for s in shard.samples:
            h.update(repr((s.key, s.offset, s.length,
                           [(m.name, m.source, m.size, m.header_size) for m in s.members])).encode())
    h.update(repr((plan.unkeyed, [(c.key, c.reason, c.urls) for c in plan.conflicts], plan.incomplete,
                   plan.excluded_samples, plan.dropped_members, plan.oversize_samples)).encode())
    return h.hexdigest()[:16]


CASES = {
    "wds": (PackOptions(shard_size=1 << 20), "efe82bf7c3786bb2"),
    "wds-exts-warn": (PackOptions(shard_size=1 << 20, exts=("jpg", "cls")), "830395378b7659b5"),
    "wds-exts-exclude": (PackOptions(shard_size=1 << 20, exts=("cls", "jpg"), missing_extension="exclude"),
                         "b53624150e844257"),
    "wds-exts-ignore-shuffled": (PackOptions(samples_per_shard=50, exts=("jpg",), missing_extension="ignore",
                                             shuffle_seed=3), "72eb84c07bb84b4a"),
    "stem": (PackOptions(shard_size=1 << 20, key_rule=KeyRule.parse("stem")), "2e1824485c91afe1"),
    "stem-exclude": (PackOptions(shard_size=256 << 10, key_rule=KeyRule.parse("stem"), exts=("jpg",),
                                 missing_extension="exclude", shuffle_seed=1), "fe51d1718a17503f"),
    "regex": (PackOptions(shard_size=1 << 20, key_rule=KeyRule.parse(r"^(.*?)[.-]")), "97e64f07e167e301"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_plan_is_identical_to_the_per_key_object_planner(case):
    options, expected = CASES[case]
    plan = make_plan(mixed_objects(), "ais://dst/s-%04d.tar", options)
    assert digest(plan) == expected


def test_keys_longer_than_the_numpy_prefix_sort_like_str_and_keep_listing_order_on_a_conflict():
    deep = "d" * 70 + "/"  # every key shares more than SORT_PREFIX bytes
    names = [f"{deep}{'x' * (i % 5)}k{i:03d}.{ext}" for i in range(200) for ext in ("jpg", "cls")]
    names += [f"{deep}é{i}.jpg" for i in range(5)] + [f"{deep}k.jpg", f"{deep}k.JPG", "short.jpg"]
    random.Random(1).shuffle(names)
    objs = source_objects("ais://src/", [f"ais://src/{n}" for n in names], [1] * len(names))
    plan = make_plan(objs, "ais://dst/s-%04d.tar", PackOptions())
    keys = [x.key for s in plan.shards for x in s.samples]
    assert keys == sorted({n.split(".")[0] for n in names})
    (conflict,) = plan.conflicts
    first, second = sorted((f"{deep}k.jpg", f"{deep}k.JPG"), key=names.index)
    assert conflict.urls == (f"ais://src/{first}", f"ais://src/{second}")
