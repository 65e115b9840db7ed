"""``choose_engine``: which engine builds a pack job's shards, from real plans (pure; no cluster)."""

from __future__ import annotations

import pytest

from ais_wds.errors import ConfigError
from ais_wds.pack.engine_choice import AUTO_CLUSTER_MAX_MEMBER, EngineChoice, choose_engine, cluster_unsupported
from ais_wds.pack.plan import KeyRule, PackOptions, make_plan, source_objects

DST = "ais://dst/train-%04d.tar"


def shards(sizes: dict, dst: str = DST, bucket: str = "ais://src", *, strip_prefix: bool = False, **options):
    """This run's shards of a real plan of objects ``name -> size`` under ``bucket``."""
    listed = source_objects(f"{bucket}/train/", [f"{bucket}/{n}" for n in sizes], list(sizes.values()),
                            strip_prefix=strip_prefix)
    return make_plan(listed, dst, PackOptions(**options)).part(0, 1)


SMALL = {f"train/s{i:03d}.{ext}": 10 << 10 for i in range(20) for ext in ("jpg", "cls")}  # 10 KiB members


@pytest.mark.parametrize("requested", ["auto", "cluster"])
def test_an_ais_plan_of_small_members_kept_as_named_goes_to_the_cluster_engine(requested):
    assert choose_engine(requested, shards(SMALL), DST) == EngineChoice("cluster", None)


def test_the_client_engine_is_used_when_asked_for_even_where_the_cluster_engine_could_build():
    assert choose_engine("client", shards(SMALL), DST) == EngineChoice("client", None)


def test_auto_leaves_cloud_sources_to_the_client_engine_and_cluster_has_ais_fetch_them():
    s3 = shards(SMALL, bucket="s3://src")
    assert choose_engine("auto", s3, DST) == EngineChoice(
        "client", "s3:// sources: auto uses the client engine (--engine cluster has AIS prefetch the objects and "
                  "assemble the shards)")
    assert choose_engine("cluster", s3, DST) == EngineChoice("cluster", None)


def test_auto_leaves_members_averaging_over_128_kib_to_the_client_engine_and_cluster_forces_it():
    big = shards({f"train/b{i:03d}.bin": 200 << 10 for i in range(8)})
    assert choose_engine("auto", big, DST) == EngineChoice(
        "client", "members average 200 KiB; above 128 KiB the client engine measured faster (--engine cluster "
                  "forces the cluster engine)")
    assert choose_engine("cluster", big, DST) == EngineChoice("cluster", None)


def test_members_averaging_exactly_128_kib_still_go_to_the_cluster_engine():
    edge = shards({"train/a.bin": AUTO_CLUSTER_MAX_MEMBER - 1000, "train/b.bin": AUTO_CLUSTER_MAX_MEMBER + 1000})
    assert choose_engine("auto", edge, DST) == EngineChoice("cluster", None)


def test_only_the_first_shard_s_members_are_averaged():
    # shard 0: small members; shard 1: one 1 MiB member (keys sort s... before z...)
    mixed = shards({**SMALL, "train/z.bin": 1 << 20}, samples_per_shard=20)
    assert len(mixed) == 2 and choose_engine("auto", mixed, DST) == EngineChoice("cluster", None)
    assert choose_engine("auto", mixed[1:], DST).engine == "client"


def test_no_shard_at_all_is_judged_by_the_destination_alone():
    assert choose_engine("auto", [], DST) == EngineChoice("cluster", None)
    assert choose_engine("auto", [], "s3://dst/t-%d.tar") == EngineChoice(
        "client", "the destination s3://dst is not an ais:// bucket of this cluster")


@pytest.mark.parametrize("dst,note", [
    ("s3://out/t-%04d.tar", "the destination s3://out is not an ais:// bucket of this cluster"),
    ("ais://@remote#ns/out/t-%04d.tar", "the destination ais://out is not an ais:// bucket of this cluster"),
])
def test_a_destination_outside_this_cluster_goes_to_the_client_engine(dst, note):
    assert choose_engine("cluster", shards(SMALL, dst), dst) == EngineChoice("client", note)


def test_sources_in_a_namespace_go_to_the_client_engine():
    remote = shards(SMALL, bucket="ais://@remote#ns/src")
    assert choose_engine("cluster", remote, DST) == EngineChoice(
        "client", "ais://@remote#ns/src/train/s000.cls is in a remote cluster or namespace; the cluster engine "
                  "reads local buckets")


def test_a_shard_with_samples_from_two_buckets_goes_to_the_client_engine():
    listed = (source_objects("ais://a/train/", ["ais://a/train/s1.jpg"], [10])
              + source_objects("ais://b/train/", ["ais://b/train/s2.jpg"], [10]))
    plan = make_plan(listed, DST)
    assert choose_engine("cluster", plan.part(0, 1), DST) == EngineChoice(
        "client", "shard ais://dst/train-0000.tar takes samples from two buckets; the cluster engine reads one per "
                  "shard")


def test_renamed_members_go_to_the_client_engine():
    stripped = shards(SMALL, strip_prefix=True)
    assert choose_engine("auto", stripped, DST) == EngineChoice(
        "client", "member 's000.cls' is not named like its object 'train/s000.cls' (AIS names archive members after "
                  "their objects; --strip-prefix and --key stem/REGEX rename them)")
    stem = shards({"train/a.v2.jpg": 10}, key_rule=KeyRule.parse("stem"))
    assert "member 'train/a_v2.jpg' is not named like its object 'train/a.v2.jpg'" in choose_engine(
        "cluster", stem, DST).note


def test_a_name_over_100_bytes_goes_to_the_client_engine():
    name = "train/" + "n" * 120 + ".jpg"
    assert choose_engine("cluster", shards({name: 10}), DST) == EngineChoice(
        "client", f"member {name!r} needs more than one ustar header block (name over 100 bytes)")


def test_cluster_unsupported_is_none_exactly_when_the_cluster_engine_is_chosen():
    assert cluster_unsupported(shards(SMALL), DST) is None
    assert cluster_unsupported(shards(SMALL), "s3://out/t-%d.tar") is not None


def test_an_unknown_engine_is_a_config_error():
    with pytest.raises(ConfigError, match=r"engine must be one of \('auto', 'client', 'cluster'\), got 'gpu'"):
        choose_engine("gpu", shards(SMALL), DST)

