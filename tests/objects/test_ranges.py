"""Batched byte-range reads (ais_wds.objects.ranges) against the live cluster: the bytes of every range
equal a plain range GET's, in request order, through pipelined range GETs to the targets (the default),
through GetBatch and through their fallbacks."""

from __future__ import annotations

import logging
import random

import pytest

from ais_wds import BucketNotFoundError, ObjectNotFoundError, read_bytes, write_bytes
from ais_wds.objects.ranges import RangeGetter, read_ranges


@pytest.fixture(scope="module")
def blobs(client, module_bucket):
    rng = random.Random(3)
    out = {}
    for i in range(6):
        url = f"ais://{module_bucket}/blobs/b-{i}.bin"
        data = rng.randbytes(rng.randint(40_000, 200_000))
        write_bytes(url, data, client)
        out[url] = data
    return out


def _ranges(blobs, n, seed):
    rng = random.Random(seed)
    urls = sorted(blobs)
    out = []
    for _ in range(n):
        url = rng.choice(urls)
        start = rng.randrange(len(blobs[url]) - 1)
        out.append((url, start, rng.randint(1, min(20_000, len(blobs[url]) - start))))
    return out


def test_every_range_comes_back_in_request_order_with_its_bytes(client, blobs):
    ranges = _ranges(blobs, 700, 1)  # several requests, the same objects many times
    ranges.append((ranges[0][0], len(blobs[ranges[0][0]]) - 5, 5))  # the last bytes of an object
    got = list(read_ranges(client, ranges, per_request=64, window=4))
    assert got == [blobs[u][s:s + n] for u, s, n in ranges]


def test_a_range_past_the_end_of_its_object_is_a_read_error(client, blobs):
    from ais_wds import ReadError

    url = sorted(blobs)[0]
    with pytest.raises(ReadError, match="shorter than expected"):
        list(read_ranges(client, [(url, 0, 10), (url, len(blobs[url]) - 10, 100)]))


def test_one_getter_call_is_one_getbatch_request_with_the_getbatch_transport(client, blobs):
    getter = RangeGetter(client, transport="getbatch")
    ranges = _ranges(blobs, 50, 2)
    assert getter.fetch(ranges) == [blobs[u][s:s + n] for u, s, n in ranges]
    assert (getter.pipelined, getter.requests, getter.fallbacks) == (0, 1, 0)


def test_by_default_a_call_is_served_by_pipelined_range_gets_to_the_targets(client, blobs):
    getter = RangeGetter(client)
    ranges = _ranges(blobs, 50, 2)
    assert getter.fetch(ranges) == [blobs[u][s:s + n] for u, s, n in ranges]
    assert (getter.pipelined, getter.requests, getter.fallbacks) == (1, 0, 0)


@pytest.mark.parametrize("transport", ["auto", "getbatch", "range"])
def test_every_transport_returns_the_same_bytes(client, blobs, transport):
    ranges = _ranges(blobs, 150, 8)
    assert list(read_ranges(client, ranges, transport=transport)) == [blobs[u][s:s + n] for u, s, n in ranges]


def test_an_unknown_transport_is_a_config_error(client):
    from ais_wds import ConfigError

    with pytest.raises(ConfigError, match="transport"):
        RangeGetter(client, transport="udp")


def test_a_missing_object_is_read_again_alone_and_raises_its_typed_error(client, blobs, module_bucket):
    ranges = _ranges(blobs, 20, 4)
    ranges.insert(7, (f"ais://{module_bucket}/blobs/absent.bin", 0, 100))
    results = RangeGetter(client).fetch(ranges)
    assert isinstance(results[7], ObjectNotFoundError) and "absent.bin" in str(results[7])
    assert [r for i, r in enumerate(results) if i != 7] == [blobs[u][s:s + n] for u, s, n in ranges if u in blobs]
    with pytest.raises(ObjectNotFoundError, match="absent.bin"):
        list(read_ranges(client, ranges))


def test_a_refused_getbatch_falls_back_to_range_gets_and_says_so_in_debug(client, blobs, caplog):
    getter = RangeGetter(client, transport="getbatch")
    ranges = [("ais://no-such-bucket-p20-ranges/x.bin", 0, 10), ("ais://no-such-bucket-p20-ranges/y.bin", 5, 10)]
    with caplog.at_level(logging.DEBUG, logger="ais_wds.objects.ranges"):
        results = getter.fetch(ranges)
    assert all(isinstance(r, BucketNotFoundError) for r in results)
    assert getter.fallbacks == 1 and any("range GETs" in r.getMessage() and r.levelno == logging.DEBUG
                                         for r in caplog.records)
    # the refusal turned GetBatch off for this getter: the next call is range GETs too, with the right bytes
    good = _ranges(blobs, 10, 5)
    assert getter.fetch(good) == [blobs[u][s:s + n] for u, s, n in good] and getter.fallbacks == 2


def test_without_the_colocation_hint_the_bytes_are_the_same(client, blobs):
    ranges = _ranges(blobs, 100, 6)
    assert list(read_ranges(client, ranges, colocation=False, transport="getbatch")) == \
        list(read_ranges(client, ranges, transport="getbatch")) == [blobs[u][s:s + n] for u, s, n in ranges]
    assert read_bytes(ranges[0][0], client)[ranges[0][1]:ranges[0][1] + ranges[0][2]] == \
        next(read_ranges(client, ranges[:1]))


def test_a_remote_clusters_bucket_is_read_by_range_gets(clouds_cluster, caplog):
    from ais_wds import Client

    client = Client(clouds_cluster.endpoint)
    remote = Client(clouds_cluster.vars["AIS_REMOTE_ENDPOINT"])
    name = "rng-remote-p20"
    remote.sdk.bucket(name).create(exist_ok=True)
    data = random.Random(9).randbytes(50_000)
    write_bytes(f"ais://{name}/o.bin", data, remote)
    ranges = [(f"ais://@remote/{name}/o.bin", s, 1000) for s in (0, 4000, 49_000)]
    getter = RangeGetter(client)
    with caplog.at_level(logging.DEBUG, logger="ais_wds.objects.ranges"):
        assert getter.fetch(ranges) == [data[s:s + 1000] for _, s, _ in ranges]
    assert getter.fallbacks == 1 and any("remote cluster" in r.getMessage() for r in caplog.records)
