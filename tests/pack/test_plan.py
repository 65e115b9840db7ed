"""Packing plan units (pure: no cluster)."""

from __future__ import annotations

import io
import random
import tarfile

import pytest
from webdataset.tariterators import base_plus_ext

from ais_wds import tarwrite
from ais_wds.errors import ConfigError
from ais_wds.pack.plan import (
    KeyRule,
    PackError,
    PackOptions,
    ShardNames,
    SourceObject,
    make_plan,
    parse_size,
    source_objects,
)


def objs(spec: dict) -> list:
    return [SourceObject(f"ais://src/{name}", name, size) for name, size in spec.items()]


# -- sizes and key rules -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,expected", [("256MiB", 256 << 20), ("1GB", 10 ** 9), ("64M", 64 << 20),
                                           ("4KB", 4000), ("1.5KiB", 1536), ("1000", 1000), (7, 7)])
def test_parse_size_accepts_iec_si_and_plain_numbers(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "12 parsecs", "0", "-5MiB"])
def test_parse_size_rejects_junk_and_non_positive(text):
    with pytest.raises(ConfigError):
        parse_size(text)


@pytest.mark.parametrize("name", ["a/b.c.jpg", "dir.v1/x.jpg", "dir/.hidden", "x.", "noext", "d/名前.seg.png",
                                  ".jpg", "a/b/c"])
def test_wds_rule_splits_exactly_like_webdataset(name):
    key, ext = base_plus_ext(name)
    expected = (key, key, ext) if key and ext else None
    assert KeyRule.parse("wds").split(name) == expected


def test_stem_rule_keeps_all_but_the_last_extension_and_replaces_dots_in_the_written_key():
    rule = KeyRule.parse("stem")
    assert rule.split("a.b/img.v2.jpg") == ("a.b/img.v2", "a.b/img_v2", "jpg")
    assert rule.split("a/noext") is None
    assert rule.split("a/.hidden") is None
    assert rule.split("a/trailing.") is None


def test_regex_rule_uses_the_group_as_key_and_the_webdataset_extension():
    rule = KeyRule.parse(r"^[^/]+/(.*)\.[^.]+$")
    assert rule.split("images/cat.01.jpg") == ("cat.01", "cat_01", "01.jpg")
    assert rule.split("toplevel.jpg") is None


@pytest.mark.parametrize("spec", [r"no-group", r"(a)(b)", r"(unclosed"])
def test_regex_rule_needs_exactly_one_valid_group(spec):
    with pytest.raises(ConfigError):
        KeyRule.parse(spec)


def test_source_objects_strip_the_directory_of_the_prefix_when_asked():
    urls = ["ais://src/train/n01/a.jpg", "ais://src/train/n02/b.jpg"]
    assert [o.name for o in source_objects("ais://src/train/n0", urls, [1, 2], strip_prefix=True)] == \
        ["n01/a.jpg", "n02/b.jpg"]
    assert [o.name for o in source_objects("ais://src/train/", urls, [1, 2])] == ["train/n01/a.jpg",
                                                                                  "train/n02/b.jpg"]


# -- grouping, conflicts, missing extensions -------------------------------------------------------------------


def test_files_of_a_sample_stay_together_ordered_by_exts_then_name():
    plan = make_plan(objs({"x/1.txt": 1, "x/1.jpg": 2, "x/1.cls": 3, "x/2.jpg": 4}), "ais://d/s-%03d.tar",
                     PackOptions(exts=("jpg", "cls")))
    samples = plan.shards[0].samples
    assert [s.key for s in samples] == ["x/1", "x/2"]
    assert [m.name for m in samples[0].members] == ["x/1.jpg", "x/1.cls", "x/1.txt"]


def test_same_extension_twice_in_a_sample_is_a_conflict():
    plan = make_plan(objs({"a.JPG": 1, "a.jpg": 1, "b.jpg": 1}), "ais://d/s-%d.tar")
    assert [(c.key, c.reason) for c in plan.conflicts] == [("a", "two files with extension 'jpg'")]
    with pytest.raises(PackError, match="conflict"):
        plan.check()


def test_two_raw_keys_that_become_one_written_key_are_a_conflict():
    plan = make_plan(objs({"a.b.jpg": 1, "a_b.cls": 1}), "ais://d/s-%d.tar", PackOptions(key_rule=KeyRule("stem")))
    assert len(plan.conflicts) == 1 and "different keys" in plan.conflicts[0].reason


def test_objects_without_extension_are_skipped_and_reported():
    plan = make_plan(objs({"README": 5, "a.jpg": 1}), "ais://d/s-%d.tar")
    assert plan.unkeyed == ["ais://src/README"]
    assert plan.num_samples == 1 and plan.problems() == []


SAMPLES = {"s1.jpg": 10, "s1.cls": 1, "s2.jpg": 10, "s3.cls": 1, "s3.txt": 1}


def test_missing_extension_warn_keeps_the_sample_and_records_it():
    plan = make_plan(objs(SAMPLES), "ais://d/s-%d.tar", PackOptions(exts=("jpg", "cls"), missing_extension="warn"))
    assert plan.num_samples == 3
    assert plan.incomplete == [("s2", ("cls",)), ("s3", ("jpg",))]
    assert plan.problems() == []


def test_missing_extension_ignore_records_nothing():
    plan = make_plan(objs(SAMPLES), "ais://d/s-%d.tar", PackOptions(exts=("jpg", "cls"), missing_extension="ignore"))
    assert plan.num_samples == 3 and plan.incomplete == []


def test_missing_extension_exclude_drops_incomplete_samples_and_extra_files():
    plan = make_plan(objs({**SAMPLES, "s1.txt": 1}), "ais://d/s-%d.tar",
                     PackOptions(exts=("jpg", "cls"), missing_extension="exclude"))
    assert [s.key for s in plan.shards[0].samples] == ["s1"]
    assert [m.name for m in plan.shards[0].samples[0].members] == ["s1.jpg", "s1.cls"]
    assert plan.excluded_samples == 2 and plan.dropped_members == 1


def test_missing_extension_abort_makes_the_plan_unexecutable():
    plan = make_plan(objs(SAMPLES), "ais://d/s-%d.tar", PackOptions(exts=("jpg", "cls"), missing_extension="abort"))
    with pytest.raises(PackError, match="lack a required extension"):
        plan.check()


# -- determinism, shuffle, sizes -------------------------------------------------------------------------------


def _many(n: int = 300, seed: int = 0) -> list:
    rnd = random.Random(seed)
    spec = {}
    for i in range(n):
        spec[f"d/{i:04d}.jpg"] = rnd.choice([0, 1, 600, 5000, 40000])
        spec[f"d/{i:04d}.cls"] = 3
    return objs(spec)


def test_plan_does_not_depend_on_listing_order():
    items = _many()
    shuffled = list(items)
    random.Random(3).shuffle(shuffled)
    a = make_plan(items, "ais://d/s-%04d.tar", PackOptions(shard_size=100_000))
    b = make_plan(shuffled, "ais://d/s-%04d.tar", PackOptions(shard_size=100_000))
    assert a.fingerprint() == b.fingerprint()
    assert [[x.key for x in s.samples] for s in a.shards] == [[x.key for x in s.samples] for s in b.shards]


def test_shuffle_seed_gives_a_fixed_permutation_of_the_same_samples():
    plain = make_plan(_many(), "ais://d/s-%d.tar", PackOptions(shard_size=100_000))
    one = make_plan(_many(), "ais://d/s-%d.tar", PackOptions(shard_size=100_000, shuffle_seed=1))
    again = make_plan(_many(), "ais://d/s-%d.tar", PackOptions(shard_size=100_000, shuffle_seed=1))
    other = make_plan(_many(), "ais://d/s-%d.tar", PackOptions(shard_size=100_000, shuffle_seed=2))
    keys = lambda p: [x.key for s in p.shards for x in s.samples]  # noqa: E731
    assert keys(one) == keys(again) and keys(one) != keys(other) and keys(one) != keys(plain)
    assert sorted(keys(one)) == keys(plain)


def test_shards_stay_within_the_target_size_except_single_oversize_samples():
    items = _many() + objs({"big/0.bin": 250_000})
    plan = make_plan(items, "ais://d/s-%d.tar", PackOptions(shard_size=100_000))
    assert plan.oversize_samples == 1
    for shard in plan.shards:
        assert shard.size <= 100_000 or len(shard.samples) == 1
        assert shard.size == sum(x.length for x in shard.samples) + 1024
        offsets = [x.offset for x in shard.samples]
        assert offsets == [sum(x.length for x in shard.samples[:k]) for k in range(len(shard.samples))]
    # greedy filling: no shard could have taken the next shard's first sample
    for a, b in zip(plan.shards, plan.shards[1:]):
        assert a.size + b.samples[0].length > 100_000


def test_samples_per_shard_fixes_the_count():
    plan = make_plan(_many(25), "ais://d/s-%d.tar", PackOptions(samples_per_shard=10))
    assert [len(s.samples) for s in plan.shards] == [10, 10, 5]


def test_parts_are_disjoint_and_cover_every_shard():
    plan = make_plan(_many(), "ais://d/s-%d.tar", PackOptions(shard_size=50_000))
    parts = [plan.part(i, 3) for i in range(3)]
    assert sorted(s.index for p in parts for s in p) == list(range(len(plan.shards)))
    assert all(s.index % 3 == i for i, p in enumerate(parts) for s in p)


# -- shard names ------------------------------------------------------------------------------------------------


def test_printf_and_brace_templates_name_shards_with_padding():
    assert ShardNames("ais://d/train-%06d.tar").url(12) == "ais://d/train-000012.tar"
    braces = ShardNames("ais://d/train-{0000..0040..8}.tar")
    assert braces.capacity == 6 and braces.url(2) == "ais://d/train-0016.tar"


def test_a_brace_template_too_small_for_the_plan_is_refused():
    with pytest.raises(PackError, match="more than the 2 shard names"):
        make_plan(_many(), "ais://d/s-{0..1}.tar", PackOptions(shard_size=50_000))


@pytest.mark.parametrize("template", ["ais://d/fixed.tar", "ais://d/%d-%d.tar", "ais://d/%s.tar"])
def test_templates_without_exactly_one_number_are_refused(template):
    with pytest.raises(ConfigError):
        ShardNames(template)


@pytest.mark.parametrize("template,stem", [("ais://d/train-%06d.tar", "ais://d/train"),
                                           ("ais://d/x/{000..009}.tar", "ais://d/x/shards"),
                                           ("ais://d/val_%d.tar", "ais://d/val")])
def test_job_objects_are_named_after_the_template_stem(template, stem):
    assert ShardNames(template).stem_url() == stem


# -- tar headers --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["a.jpg", "d/" * 60 + "f.cls", "y" * 120 + ".z", "日本/画像.png", "z" * 2000 + ".x"])
def test_member_headers_have_the_computed_size_and_read_back_with_tarfile(name):
    data = b"x" * 777
    header = tarwrite.member_header(name, len(data), mtime=1_700_000_000)
    assert len(header) == tarwrite.header_size(name, len(data))
    raw = header + data + bytes(tarwrite.padding(len(data))) + tarwrite.END_OF_ARCHIVE
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        (member,) = tar.getmembers()
        assert (member.name, member.size, member.mtime) == (name, 777, 1_700_000_000)
        assert tar.extractfile(member).read() == data


def test_ascii_names_that_fit_ustar_get_a_single_block_header():
    assert tarwrite.header_size("a" * 100, 5) == 512
    assert tarwrite.header_size("p" * 155 + "/" + "n" * 100, 5) == 512
    assert tarwrite.header_size("a" * 101, 5) > 512
    assert tarwrite.header_size("ä.jpg", 5) > 512
