"""Object-level datasets and pipes on the live cluster: AISDataset, AISIterDataset, AISFileLister, AISFileLoader,
and the fetch-ahead engine under them."""

import hashlib
import json
import os
import subprocess
import sys
import threading
import time

import pytest
import torch
from torch.utils.data import DataLoader

from ais_wds import BucketNotFoundError, ConfigError, Listing, NotFoundError, ObjectNotFoundError, Part, write_bytes
from ais_wds.datasets import (
    AISDataset,
    AISFileLister,
    AISFileListerIterDataPipe,
    AISFileLoader,
    AISFileLoaderIterDataPipe,
    AISIterDataset,
)
from ais_wds.objects.fetch import BatchGetter, DirectGetter
from ais_wds.objects.prefetch import Prefetcher
from ais_wds.tar import iter_members
from tests.support.http_log import http_log

N = 40
ODD_NAMES = ["odd/a b/c.d.e.jpg", "odd/ünï/cødé €.txt", "odd/" + "x" * 120 + "/y/z" * 20 + ".tar.gz",
             "odd/..dots../.hidden", "odd/100%/q?x=1&y#frag"]


def _payload(i: int) -> bytes:
    return (f"object {i:03d} ".encode() * (1 + i * 7))[: 50 + i * 97]


@pytest.fixture(scope="module")
def data(client, module_bucket):
    """N objects under data/ (sizes 50..~3.8k bytes), with their expected bytes by URL."""
    objects = {f"ais://{module_bucket}/data/obj-{i:03d}.bin": _payload(i) for i in range(N)}
    for url, body in objects.items():
        write_bytes(url, body, client)
    return objects


def _fresh(client, bucket, names_bytes):
    out = {}
    for name, body in names_bytes.items():
        url = f"ais://{bucket}/{name}"
        write_bytes(url, body, client)
        out[url] = body
    return out


def _collect(loader):
    return [sample for batch in loader for sample in batch]


# -- map-style ------------------------------------------------------------------------------------

def test_map_dataset_returns_url_and_exact_bytes_by_index(client, data):
    ds = AISDataset(client, next(iter(data)).rsplit("/", 1)[0] + "/")
    urls = sorted(data)
    assert len(ds) == N and ds.urls == urls
    assert ds[0] == (urls[0], data[urls[0]])
    assert ds[-1] == (urls[-1], data[urls[-1]])
    with pytest.raises(IndexError):
        ds[N]


@pytest.mark.parametrize("fetch", ["get", "batch"])
def test_getitems_returns_the_batch_in_index_order_for_each_fetch_method(client, data, fetch):
    ds = AISDataset(client.endpoint, sorted(data)[0].rsplit("/", 1)[0] + "/", fetch=fetch, read_ahead=0)
    picks = [7, 3, 39, 0, 3]
    urls = sorted(data)
    assert ds.__getitems__(picks) == [(urls[i], data[urls[i]]) for i in picks]


def test_map_dataset_in_dataloader_reads_ahead_with_its_sampler_and_stays_exact(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    ds = AISDataset(client, prefix, read_ahead=8)  # two batches of 4 ahead
    sampler = ds.sampler(shuffle=True, seed=5)
    sampler.set_epoch(1)
    order = list(sampler)
    sampler.set_epoch(1)  # (each iteration starts the next epoch unless told otherwise)
    got = _collect(DataLoader(ds, sampler=sampler, batch_size=4, collate_fn=list))
    assert [u for u, _ in got] == [ds.urls[i] for i in order]
    assert all(body == data[u] for u, body in got)
    assert sorted(order) == list(range(N)) and order != list(range(N))
    assert ds._ahead.hits >= N // 4 - 2  # every batch after the first ones came from the read-ahead


@pytest.mark.parametrize("batch,read_ahead,per_request", [(3, 12, 6), (5, 50, 7), (1, 4, 256), (16, 1, 4)])
def test_map_read_ahead_groups_small_batches_into_requests_and_serves_each_batch_exactly(
        client, data, batch, read_ahead, per_request):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    ds = AISDataset(client, prefix, read_ahead=read_ahead, batch_size=per_request)
    sampler = ds.sampler(shuffle=True, seed=9)
    batches = list(DataLoader(ds, sampler=sampler, batch_size=batch, collate_fn=list))
    sampler.set_epoch(0)
    order = list(sampler)
    assert [[u for u, _ in b] for b in batches] == [[ds.urls[i] for i in order[k:k + batch]]
                                                    for k in range(0, N, batch)]
    assert all(body == data[u] for b in batches for u, body in b)
    assert ds._ahead.hits >= len(batches) - 2


def test_map_dataset_sampler_splits_ranks_into_balanced_disjoint_shares(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    ds = AISDataset(client, prefix)
    shares = [list(ds.sampler(shuffle=True, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert sorted(i for s in shares for i in s) == list(range(N))
    assert [len(s) for s in shares] == [13, 13, 14]
    assert [len(ds.sampler(rank=r, world_size=3, even="drop")) for r in range(3)] == [13, 13, 13]


def test_map_dataset_with_two_workers_yields_every_object_once_and_lists_only_in_main(client, data, monkeypatch):
    from torch.utils.data import get_worker_info

    import ais_wds.datasets._common as common

    real = common.list_objects

    def guarded(*args, **kwargs):
        assert get_worker_info() is None, "listing inside a DataLoader worker"
        return real(*args, **kwargs)

    monkeypatch.setattr(common, "list_objects", guarded)
    ds = AISDataset(client, sorted(data)[0].rsplit("/", 1)[0] + "/")
    got = _collect(DataLoader(ds, batch_size=5, num_workers=2, collate_fn=list,
                              sampler=ds.sampler(shuffle=True, seed=1)))
    assert sorted(u for u, _ in got) == sorted(data)
    assert all(body == data[u] for u, body in got)


# -- iterable ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fetch", ["batch", "get"])
def test_iter_dataset_yields_every_object_once_in_listing_order(client, data, fetch):
    ds = AISIterDataset(client, sorted(data)[0].rsplit("/", 1)[0] + "/", fetch=fetch, batch_size=7)
    got = list(ds)
    assert [u for u, _ in got] == sorted(data)
    assert all(body == data[u] for u, body in got)
    assert len(ds) == N


def test_iter_dataset_parts_cover_every_object_exactly_once_over_two_ranks_and_three_workers(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    ds = AISIterDataset(client, prefix, shuffle=True, seed=11)
    ds.set_epoch(2)
    seen = []
    for rank in range(2):
        for worker in range(3):
            seen += [u for u, _ in AISIterDataset.from_listing(ds.listing, client, shuffle=True, seed=11,
                                                               part=Part(rank, 2, worker, 3)).__iter__()]
    assert len(seen) == N and set(seen) == set(data)


RANK_SCRIPT = r"""
import json, sys
from torch.utils.data import DataLoader
from ais_wds.datasets import AISIterDataset, AISDataset
ds = AISIterDataset(None, sys.argv[1], shuffle=True, seed=7)
ds.set_epoch(3)
it = [u for b in DataLoader(ds, batch_size=4, num_workers=3, collate_fn=list) for u, _ in b]
m = AISDataset(None, sys.argv[1])
mp = [u for b in DataLoader(m, batch_size=4, num_workers=3, collate_fn=list, sampler=m.sampler(shuffle=True))
      for u, _ in b]
print(json.dumps({"iter": it, "map": mp, "len": len(ds)}))
"""


def test_two_ranks_from_env_times_three_workers_read_every_object_exactly_once(data, ais_endpoint):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    procs = [subprocess.Popen([sys.executable, "-c", RANK_SCRIPT, prefix], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "AIS_ENDPOINT": ais_endpoint, "RANK": str(r), "WORLD_SIZE": "2"})
             for r in range(2)]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    for kind in ("iter", "map"):
        urls = outs[0][kind] + outs[1][kind]
        assert len(urls) == N and set(urls) == set(data), kind
        assert set(outs[0][kind]).isdisjoint(outs[1][kind])
    assert [o["len"] for o in outs] == [N // 2, N // 2]


def test_shuffle_depends_on_seed_and_epoch_only(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    a = AISIterDataset(client, prefix, shuffle=True, seed=1)
    b = AISIterDataset(client, prefix, shuffle=True, seed=1)
    first = [u for u, _ in a]
    assert first == [u for u, _ in b] and first != sorted(data)
    a.set_epoch(1)
    assert [u for u, _ in a] != first
    assert sorted(u for u, _ in a) == sorted(data)


def test_state_dict_resume_yields_exactly_the_remaining_objects(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    full = AISIterDataset(client, prefix, shuffle=True, seed=4)
    full.set_epoch(5)
    expected = [u for u, _ in full]

    ds = AISIterDataset(client, prefix, shuffle=True, seed=4, batch_size=8)
    ds.set_epoch(5)
    it = iter(ds)
    head = [next(it)[0] for _ in range(13)]
    state = json.loads(json.dumps(ds.state_dict()))  # plain values
    it.close()
    assert head == expected[:13] and state["epoch"] == 5

    resumed = AISIterDataset(client, prefix, shuffle=True, seed=4)
    resumed.load_state_dict(state)
    assert [u for u, _ in resumed] == expected[13:]
    full.set_epoch(6)
    assert [u for u, _ in resumed] == [u for u, _ in full]  # the next iteration is the whole next epoch
    assert (resumed.state_dict()["epoch"], resumed.state_dict()["progress"]) == (6, [N, 0])


def test_state_dict_resume_per_worker_part(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    part = Part(0, 1, 1, 2)
    ds = AISIterDataset(client, prefix, part=part)
    ds.set_epoch(0)
    share = [u for u, _ in ds]
    ds.set_epoch(0)
    it = iter(ds)
    for _ in range(5):
        next(it)
    state = ds.state_dict()
    assert (state["worker"], state["num_workers"], state["progress"]) == (1, 2, [5, 0])
    again = AISIterDataset(client, prefix, part=part)
    again.load_state_dict(state)
    assert [u for u, _ in again] == share[5:]


def test_state_dict_from_another_listing_is_refused(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    ds = AISIterDataset(client, prefix)
    other = AISIterDataset(client, prefix + "obj-00")
    with pytest.raises(ConfigError, match="num_objects"):
        other.load_state_dict(ds.state_dict())


def _transform(sample):
    url, body = sample
    return url, hashlib.sha1(body).hexdigest(), os.getpid()


def _shas(objects):
    """Sorted (url, sha1 of the bytes written)."""
    return sorted((u, hashlib.sha1(b).hexdigest()) for u, b in objects.items())


def test_transform_runs_in_the_workers_even_after_the_main_process_iterated(client, data):
    ds = AISIterDataset(client, sorted(data)[0].rsplit("/", 1)[0] + "/", transform=_transform)
    assert {pid for _, _, pid in ds} == {os.getpid()}  # threads and pools now exist in this process
    got = _collect(DataLoader(ds, batch_size=4, num_workers=2, collate_fn=list))
    assert sorted((u, sha) for u, sha, _ in got) == _shas(data)
    assert os.getpid() not in {pid for _, _, pid in got} and len({pid for _, _, pid in got}) == 2


# -- sources, names, sizes, errors --------------------------------------------------------------------

def test_urls_list_and_ais_source_list_mix_prefixes_buckets_and_object_groups(client, data, bucket):
    extra = _fresh(client, bucket, {"b/one": b"1", "b/two": b"22", "c/three": b"333"})
    sdk_bucket = client.sdk.bucket(bucket)
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/obj-00"
    ds = AISDataset(client, [prefix], [sdk_bucket.objects(obj_names=["c/three", "b/one"]), sdk_bucket])
    expect = [u for u in sorted(data) if u.startswith(prefix)] + \
        [f"ais://{bucket}/c/three", f"ais://{bucket}/b/one"] + sorted(extra)
    assert ds.urls == expect
    everything = {**data, **extra}
    assert ds.__getitems__(range(len(ds))) == [(u, everything[u]) for u in expect]
    assert [(u, b) for u, b in AISIterDataset(client, None, sdk_bucket)] == sorted(extra.items())


def test_no_source_is_a_config_error(client):
    with pytest.raises(ConfigError, match="urls_list"):
        AISDataset(client)


@pytest.mark.parametrize("url", ["s3://no-such-bucket-ais-wds/x", "gs://no-such-bucket-ais-wds/train/"])
def test_cloud_bucket_without_backend_or_credentials_fails_fast_with_a_clear_error(client, url):
    for make in (AISDataset, AISIterDataset):
        with http_log() as log:
            with pytest.raises((NotFoundError, ConfigError)) as info:
                make(client, url)
        assert url.split("/x")[0].rstrip("/") in str(info.value)
        # fast, counted not timed: the endpoint probe (once per process) and the bucket's 404, no retry
        assert not log.retries and len(log.requests) <= 2, log.summary()
    # on the per-object path too (a URL list made elsewhere)
    with http_log() as log:
        result = DirectGetter(client).get(url.rstrip("/") + "/obj")
    assert isinstance(result, BucketNotFoundError)
    # the cluster map (once), the target's 400 (the same direct GET twice, as of 2026-12-06) and the
    # gateway's 404; no retry
    assert not log.retries and len(log.requests) <= 4, log.summary()
    if "backend is missing" in str(result):  # what a cluster built without cloud backends answers
        provider = {"s3": "aws", "gs": "gcp"}[url.split(":")[0]]
        assert f"cannot reach {provider} buckets" in str(result)


@pytest.mark.parametrize("fetch", ["batch", "get"])
def test_zero_byte_objects_come_back_empty(client, bucket, fetch):
    objs = _fresh(client, bucket, {"z/a-empty": b"", "z/b-full": b"xyz", "z/c-empty": b""})
    it = AISIterDataset(client, f"ais://{bucket}/z/", fetch=fetch, batch_size=3)
    assert list(it) == sorted(objs.items())
    ds = AISDataset(client, f"ais://{bucket}/z/", fetch=fetch, read_ahead=0)
    assert ds.__getitems__([0, 1, 2]) == sorted(objs.items())
    assert ds[2] == (f"ais://{bucket}/z/c-empty", b"")


def test_names_with_unicode_spaces_dots_slashes_and_url_characters(client, bucket):
    objs = _fresh(client, bucket, {name: name.encode() for name in ODD_NAMES})
    prefix = f"ais://{bucket}/odd/"
    assert sorted(AISFileLister(client, prefix)) == sorted(objs)
    for fetch in ("batch", "get"):
        assert list(AISIterDataset(client, prefix, fetch=fetch, batch_size=len(objs))) == sorted(objs.items())
        ds = AISDataset(client, prefix, fetch=fetch, read_ahead=0)
        assert ds.__getitems__(range(len(ds))) == sorted(objs.items())
    assert [(u, s.read()) for u, s in AISFileLoader(client, sorted(objs))] == sorted(objs.items())
    getter = DirectGetter(client)
    assert getter.fetch(sorted(objs)) == [objs[u] for u in sorted(objs)]
    assert getter.fallbacks == 0  # the direct path served every name


def _with_deleted(client, bucket):
    objs = _fresh(client, bucket, {f"d/{i}": str(i).encode() * 10 for i in range(6)})
    it = AISIterDataset(client, f"ais://{bucket}/d/", batch_size=4)
    ds = AISDataset(client, f"ais://{bucket}/d/", read_ahead=0)
    gone = f"ais://{bucket}/d/3"
    client.object(gone).delete()
    return objs, it, ds, gone


def test_object_deleted_after_listing_raises_object_not_found_naming_it(client, bucket):
    objs, it, ds, gone = _with_deleted(client, bucket)
    with pytest.raises(ObjectNotFoundError) as info:
        list(it)
    assert info.value.url == gone and gone in str(info.value)
    with pytest.raises(ObjectNotFoundError, match=gone):
        ds[3]
    for fetch in ("get", "batch"):
        with pytest.raises(ObjectNotFoundError, match=gone):
            AISDataset.from_listing(ds.listing, client, fetch=fetch, read_ahead=0).__getitems__([2, 3, 4])
    with pytest.raises(ObjectNotFoundError, match=gone):
        list(DataLoader(it, batch_size=2, num_workers=2, collate_fn=list))


def test_object_deleted_after_listing_is_skipped_and_counted(client, bucket, caplog):
    objs, it, ds, gone = _with_deleted(client, bucket)
    expect = [(u, b) for u, b in sorted(objs.items()) if u != gone]
    skip_it = AISIterDataset.from_listing(it.listing, client, on_error="skip")
    with caplog.at_level("WARNING", logger="ais_wds.datasets._common"):
        assert list(skip_it) == expect
    assert skip_it.skipped == 1 and gone in caplog.text
    skip_ds = AISDataset.from_listing(ds.listing, client, on_error="skip", read_ahead=0)
    assert skip_ds.__getitems__(range(6)) == expect
    assert skip_ds[3] is None and skip_ds.skipped == 2
    # counted in the main process when the skip happens in DataLoader workers
    in_workers = AISIterDataset.from_listing(it.listing, client, on_error="skip", batch_size=2)
    assert sorted(_collect(DataLoader(in_workers, batch_size=2, num_workers=2, collate_fn=list))) == expect
    assert in_workers.skipped == 1


def test_dataloader_with_two_spawn_workers(client, data, bucket):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    it = AISIterDataset(client, prefix, transform=_transform)
    got = _collect(DataLoader(it, batch_size=3, num_workers=2, multiprocessing_context="spawn", collate_fn=list))
    assert sorted((u, sha) for u, sha, _ in got) == _shas(data)
    ds = AISDataset(client, prefix)
    got = _collect(DataLoader(ds, batch_size=3, num_workers=2, multiprocessing_context="spawn", collate_fn=list,
                              sampler=ds.sampler(shuffle=True)))
    assert sorted(got) == sorted(data.items())
    # the skip count crosses spawn too
    objs, skipping, _, gone = _with_deleted(client, bucket)
    skipping = AISIterDataset.from_listing(skipping.listing, client, on_error="skip")
    assert sorted(_collect(DataLoader(skipping, batch_size=2, num_workers=2, multiprocessing_context="spawn",
                                      collate_fn=list))) == sorted((u, b) for u, b in objs.items() if u != gone)
    assert skipping.skipped == 1


def test_bad_options_are_config_errors(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    for kwargs in ({"on_error": "ignore"}, {"fetch": "fast"}, {"even": "pad"}):
        with pytest.raises(ConfigError):
            AISIterDataset(client, prefix, **kwargs)


# -- pipes --------------------------------------------------------------------------------------------

def test_file_lister_yields_object_urls_under_each_prefix_and_its_len(client, data, bucket):
    extra = _fresh(client, bucket, {"p/1": b"a", "p/2": b"b"})
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/obj-01"
    lister = AISFileLister(client, [prefix, f"ais://{bucket}/p/"])
    assert list(lister) == [u for u in sorted(data) if u.startswith(prefix)] + sorted(extra)
    assert len(lister) == len(list(lister))
    assert AISFileListerIterDataPipe is AISFileLister and AISFileLoaderIterDataPipe is AISFileLoader


def test_file_loader_yields_url_and_streaming_reader(client, data):
    urls = sorted(data)[:5]
    out = []
    for url, stream in AISFileLoader(client, urls):
        with stream:
            out.append((url, stream.read(10) + stream.read()))
    assert out == [(u, data[u]) for u in urls]
    assert len(AISFileLoader(client, urls)) == 5  # a list: its length (the rank's share)
    with pytest.raises(TypeError):
        len(AISFileLoader(client, iter(urls)))  # a lazy source: no len()


def test_file_loader_stream_of_a_missing_object_raises_at_first_read(client, data):
    missing = sorted(data)[0].rsplit("/", 1)[0] + "/no-such-object"
    ((url, stream),) = list(AISFileLoader(client, [missing]))
    with pytest.raises(ObjectNotFoundError, match="no-such-object"):
        stream.read()


def _read_pair(pair):
    url, stream = pair
    with stream:
        return url, stream.read()


def test_lister_and_loader_compose_in_a_dataloader_with_workers_exactly_once(client, data):
    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/"
    loader = AISFileLoader(client, AISFileLister(client, prefix))
    got = [_read_pair(p) for p in loader]
    assert got == sorted(data.items())
    pairs = _collect(DataLoader(_ReadingLoader(client, AISFileLister(client, prefix)), batch_size=4,
                                num_workers=2, collate_fn=list))
    assert sorted(pairs) == sorted(data.items())
    listed = _collect(DataLoader(AISFileLister(client, prefix), batch_size=4, num_workers=3, collate_fn=list))
    assert sorted(listed) == sorted(data)


class _ReadingLoader(AISFileLoader):
    """Streams do not cross process boundaries: read them in the worker."""

    def __iter__(self):
        return map(_read_pair, super().__iter__())


def test_lister_and_loader_are_webdataset_pipeline_stages(client, data):
    import webdataset as wds

    prefix = sorted(data)[0].rsplit("/", 1)[0] + "/obj-02"
    pipeline = wds.DataPipeline(lambda: iter([prefix]), AISFileLister(client), AISFileLoader(client),
                                wds.map(_read_pair))
    assert list(pipeline) == [(u, b) for u, b in sorted(data.items()) if u.startswith(prefix)]
    # webdataset-style dicts with "url" are accepted as input too
    assert [u for u, _ in AISFileLoader(client)([{"url": u} for u in sorted(data)[:2]])] == sorted(data)[:2]


# -- the fetch-ahead engine (no cluster) ------------------------------------------------------------------

class _FakeGetter:
    def __init__(self, delay=0.0, fail=()):
        self.delay, self.fail = delay, set(fail)
        self.active = self.peak = 0
        self.calls = []
        self.lock = threading.Lock()

    def fetch(self, urls):
        with self.lock:
            self.active += 1
            self.peak = max(self.peak, self.active)
            self.calls.append(list(urls))
        time.sleep(self.delay * (1 + hash(urls[0]) % 3))
        with self.lock:
            self.active -= 1
        return [ObjectNotFoundError("gone", url=u) if u in self.fail else u.encode() for u in urls]


def test_prefetcher_keeps_input_order_and_returns_errors_as_values():
    getter = _FakeGetter(delay=0.002, fail={"u7"})
    engine = Prefetcher(getter, threads=4, batch_size=3)
    out = list(engine.imap((f"u{i}", 10) for i in range(50)))
    assert [u for u, _ in out] == [f"u{i}" for i in range(50)]
    assert [r for u, r in out if u != "u7"] == [f"u{i}".encode() for i in range(50) if i != 7]
    assert isinstance(dict(out)["u7"], ObjectNotFoundError)
    assert max(len(c) for c in getter.calls) == 3 and getter.peak > 1


def test_prefetcher_bounds_bytes_in_flight_and_cuts_units_by_bytes():
    getter = _FakeGetter(delay=0.003)
    engine = Prefetcher(getter, threads=2, batch_size=100, batch_bytes=250, max_bytes=1000, depth=8)
    assert len(list(engine.imap((f"u{i}", 100) for i in range(40)))) == 40
    assert max(len(c) for c in getter.calls) == 2  # 2 x 100 bytes <= 250 per unit
    assert getter.peak <= 2  # threads (the window: tests/objects/test_prefetch.py)


def test_prefetcher_fetch_all_spreads_a_batch_over_threads_in_order():
    getter = _FakeGetter(delay=0.002)
    engine = Prefetcher(getter, threads=4, batch_size=64)
    assert engine.fetch_all([(f"u{i}", -1) for i in range(20)]) == [f"u{i}".encode() for i in range(20)]
    assert sorted(len(c) for c in getter.calls) == [5, 5, 5, 5]


def test_prefetcher_stops_fetching_when_the_consumer_stops():
    getter = _FakeGetter(delay=0.01)
    engine = Prefetcher(getter, threads=2, depth=4)
    it = engine.imap((f"u{i}", 1) for i in range(1000))
    next(it)
    it.close()
    # a fetch counts when it starts: the ones running at close() are in the count, the queued ones must
    # never start. Over a wait of 30 fetch delays the count must not move (a prefetcher that went on, or
    # ran its queue, starts more in it: slow as the machine may be, one is enough to fail)
    with getter.lock:
        at_close = len(getter.calls)
    time.sleep(0.3)
    assert len(getter.calls) == at_close, f"{len(getter.calls) - at_close} fetches started after close()"
    assert at_close <= 1 + 4  # the one consumed and the depth fetched ahead
    engine.close()


def test_batch_getter_serves_several_buckets_in_request_order(client, data, bucket):
    _fresh(client, bucket, {"m/x": b"x" * 3, "m/empty": b""})
    urls = [sorted(data)[5], f"ais://{bucket}/m/x", sorted(data)[1], f"ais://{bucket}/m/empty",
            f"ais://{bucket}/m/missing"]
    got = BatchGetter(client, members=iter_members).fetch(urls)
    assert got[:4] == [data[urls[0]], b"xxx", data[urls[2]], b""]
    assert isinstance(got[4], ObjectNotFoundError) and got[4].url == urls[4]


def test_datasets_pickle_without_connections_and_with_their_listing(client, data):
    import pickle

    ds = AISIterDataset(client, sorted(data)[0].rsplit("/", 1)[0] + "/")
    list(ds)  # opens pools and threads in this process
    copy = pickle.loads(pickle.dumps(ds))
    assert isinstance(copy.listing, Listing) and copy.listing.urls == ds.listing.urls
    assert [u for u, _ in copy] == sorted(data)
    assert torch.utils.data.get_worker_info() is None
