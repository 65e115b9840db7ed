"""The pack plan keeps its members in flat arrays: same plans as before, a fraction of the memory."""

import random
import tracemalloc

from ais_wds.pack.plan import KeyRule, PackOptions, make_plan, source_objects


def _objects(n, exts=("jpg", "cls")):
    urls = [f"ais://src/train/n{i % 7}/img-{i:08d}.{e}" for i in range(n) for e in exts]
    return source_objects("ais://src/train/", urls, [100 + i for i in range(len(urls))])


def test_shuffled_plan_is_random_shuffle_of_the_key_sorted_samples():
    objs = _objects(300)
    plan = make_plan(objs, "ais://dst/s-%04d.tar", PackOptions(samples_per_shard=64, shuffle_seed=5))
    keys = sorted({o.name.split(".")[0] for o in objs})
    random.Random("ais_wds.pack:5").shuffle(keys)
    assert [x.key for s in plan.shards for x in s.samples] == keys
    assert [s.num_samples for s in plan.shards] == [64, 64, 64, 64, 44]


def test_materialised_samples_carry_names_sources_sizes_offsets():
    objs = _objects(5)
    by_url = {o.url: o for o in objs}
    plan = make_plan(objs, "ais://dst/s-%04d.tar", PackOptions(exts=("jpg", "cls")))
    (shard,) = plan.shards
    offset = 0
    for sample in shard.samples:
        assert sample.offset == offset
        assert [m.name.rsplit(".", 1)[1] for m in sample.members] == ["jpg", "cls"]
        for m in sample.members:
            assert m.name.startswith(sample.key + ".") and by_url[m.source].size == m.size
            assert m.source.endswith(m.name) and m.header_size == 512
        offset += sample.length
    assert shard.size == offset + 1024


def test_member_names_that_are_not_the_url_tail_and_non_ascii_round_trip():
    urls = ["ais://src/d/épreuve.v2.jpg", "ais://src/d/épreuve.v2.txt", "ais://src/d/b.v1.jpg"]
    objs = source_objects("ais://src/", urls, [1, 2, 3])
    plan = make_plan(objs, "ais://dst/s-%04d.tar", PackOptions(key_rule=KeyRule.parse("stem")))
    got = [(x.key, [(m.name, m.source, m.size) for m in x.members]) for x in plan.shards[0].samples]
    assert got == [("d/b_v1", [("d/b_v1.jpg", urls[2], 3)]),
                   ("d/épreuve_v2", [("d/épreuve_v2.jpg", urls[0], 1), ("d/épreuve_v2.txt", urls[1], 2)])]


def test_plan_holds_about_the_url_plus_forty_bytes_per_member():
    objs = _objects(10_000, exts=("jpg",))
    url_bytes = sum(len(o.url) for o in objs) / len(objs)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    plan = make_plan(objs, "ais://dst/s-%06d.tar", PackOptions(shard_size=1 << 20))
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    assert plan.num_samples == 10_000
    assert held / 10_000 < url_bytes + 60  # ~324 bytes per member as objects


def _per_member_fingerprint(plan):
    """The fingerprint as 0.2 computed it (one hash update per member): markers written then must still match."""
    import hashlib

    h = hashlib.sha256(f"ais-wds-pack-v1 mtime={plan.options.mtime}\n".encode())
    for shard in plan.shards:
        h.update(f"S {shard.url} {shard.size}\n".encode())
        for sample in shard.samples:
            for m in sample.members:
                h.update(f"{m.name}\0{m.source}\0{m.size}\n".encode())
    return h.hexdigest()[:32]


def test_members_and_sample_spans_read_from_the_arrays_are_the_materialised_samples():
    urls = ["ais://src/d/épreuve.v2.jpg", "ais://src/d/épreuve.v2.txt", "ais://src/d/b.v1.jpg"]
    for objs, options in ((_objects(700), PackOptions(samples_per_shard=64, shuffle_seed=3)),
                          (source_objects("ais://src/", urls, [1, 2, 3]), PackOptions(key_rule=KeyRule.parse("stem")))):
        plan = make_plan(objs, "ais://dst/s-%04d.tar", options)
        for shard in plan.shards:
            assert shard.members() == [(m.name, m.source, m.size, m.header_size)
                                       for x in shard.samples for m in x.members]
            expected = []
            for x in shard.samples:
                pos, spans = x.offset, []
                for m in x.members:
                    spans.append((m.name, pos + m.header_size, m.size))
                    pos += m.span
                expected.append((x.key, x.offset, x.length, spans))
            assert list(shard.sample_spans()) == expected
        assert plan.fingerprint() == _per_member_fingerprint(plan)


def test_shard_spans_are_the_samples_offsets_and_the_member_layout():
    from ais_wds.pack.engines.cluster import shard_spans
    from ais_wds.tar import writer as tarwrite

    plan = make_plan(_objects(50), "ais://dst/s-%04d.tar", PackOptions(samples_per_shard=16, shuffle_seed=1))
    for shard in plan.shards:
        expected = []
        for sample in shard.samples:
            offset = sample.offset
            for m in sample.members:
                expected.append((m.name, offset, offset + m.header_size, m.size))
                offset += m.header_size + m.size + tarwrite.padding(m.size)
        assert shard_spans(shard) == shard_spans(shard, shard.members()) == expected


def test_plan_rows_of_source_rows_is_make_plan_of_source_objects():
    from ais_wds.pack.plan import plan_rows, source_rows

    urls = [f"ais://src/train/n{i % 7}/img-{i:08d}.{e}" for i in range(300) for e in ("jpg", "cls")] + \
        ["ais://src/train/épreuve.v2.jpg", "ais://src/train/noext", "ais://src/train/x.jpg", "ais://src/train/x.JPG"]
    sizes = list(range(len(urls)))
    for options in (PackOptions(samples_per_shard=50, shuffle_seed=2), PackOptions(key_rule=KeyRule.parse("stem")),
                    PackOptions(strip_prefix=True, exts=("jpg", "cls"), missing_extension="exclude")):
        a = make_plan(source_objects("ais://src/train/", urls, sizes, strip_prefix=options.strip_prefix),
                      "ais://dst/s-%04d.tar", options)
        b = plan_rows(source_rows("ais://src/train/", urls, sizes, strip_prefix=options.strip_prefix),
                      "ais://dst/s-%04d.tar", options)
        assert a.fingerprint() == b.fingerprint() and [s.members() for s in a.shards] == [s.members() for s in b.shards]
        assert (a.unkeyed, a.conflicts, a.incomplete, a.excluded_samples, a.dropped_members) == \
            (b.unkeyed, b.conflicts, b.incomplete, b.excluded_samples, b.dropped_members)
