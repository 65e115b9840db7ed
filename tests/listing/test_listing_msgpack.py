"""Listing from AIS's msgpack pages (ais_wds.objects.list_pages): the same names and sizes as the SDK's
listing, byte for byte, on ais://, archive members, cloud buckets (s3, gs, az emulators) and a remote AIS
cluster (ais://@remote/), through the client's connections; the JSON fallback and the retry of a page the
gateway could not get from a target, through a forwarder in front of the real gateway."""

from __future__ import annotations

import random
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import List, Tuple

import pytest

from ais_wds import AuthError, BucketNotFoundError, Client, RequestError, list_objects, write_bytes
from ais_wds.objects.list_pages import LS_ARCH_DIR, list_pages
from ais_wds.urls import parse_url
from tests.support.http_log import http_log
from tests.support.list_forwarder import ListForwarder
from tests.support.tars import tar_bytes

NAMES = ["a/plain-000.bin", "a/ünï-cödé-名前.bin", "a/with space.bin", "a/x" * 40 + ".bin", "b/other.bin"]


def _sdk_listing(client: Client, url: str, flags=None) -> List[Tuple[str, int]]:
    """The reference: the aistore SDK's own listing of ``url`` (its models), as (url, size)."""
    u = parse_url(url)
    bucket = client.bucket(u)
    base = u.join("x")[:-1]
    return [(base + e.name, int(e.size or 0))
            for e in bucket.list_objects_iter(prefix=u.path, props="name,size", flags=flags)
            if not e.name.endswith("/")]


@pytest.fixture(scope="module")
def mixed(client, module_bucket):
    rng = random.Random(20)
    names = NAMES + [f"many/o-{i:04d}-{rng.randbytes(3).hex()}" for i in range(1200)]
    sizes = {n: rng.randint(0, 3000) for n in names}
    sizes["zero/empty.bin"] = 0  # AIS's msgpack entry leaves the size out (omitempty); its JSON one too
    names.append("zero/empty.bin")
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: write_bytes(f"ais://{module_bucket}/{n}", rng.randbytes(sizes[n]), client), names))
    return module_bucket, sizes


def test_a_paged_listing_has_the_sdk_listings_names_and_sizes_byte_for_byte(client, mixed):
    bucket, sizes = mixed
    pages: List[int] = []
    listing = list_objects(f"ais://{bucket}/", client, page_size=97, on_page=pages.append)
    assert len(pages) >= 13 and pages[-1] == len(listing) == len(sizes)
    assert list(listing) == _sdk_listing(client, f"ais://{bucket}/")
    assert dict((u.split("/", 3)[3], s) for u, s in listing) == sizes
    assert bytes(listing._blob) == b"".join(f"ais://{bucket}/{n}".encode() for n in sorted(sizes, key=str.encode))


def test_a_prefix_lists_only_its_objects_including_non_ascii_names(client, mixed):
    bucket, sizes = mixed
    listing = list_objects(f"ais://{bucket}/a/", client)
    assert listing.urls == [f"ais://{bucket}/{n}" for n in sorted(NAMES[:-1], key=str.encode)]
    assert listing.sizes == [sizes[n] for n in sorted(NAMES[:-1], key=str.encode)]


def test_the_default_page_size_lists_everything_in_one_go(client, mixed):
    bucket, _ = mixed
    assert list(list_objects(f"ais://{bucket}/", client)) == _sdk_listing(client, f"ais://{bucket}/")


def test_archive_members_are_listed_as_the_sdk_lists_them(client, bucket):
    members = {f"k{i:03d}.{ext}": random.Random(i).randbytes(100 + i) for i in range(20) for ext in ("jpg", "cls")}
    write_bytes(f"ais://{bucket}/shards/s-0.tar", tar_bytes(members.items()), client)
    from aistore.sdk.list_object_flag import ListObjectFlag

    listing = list_objects(f"ais://{bucket}/shards/", client, archive_members=True, page_size=9)
    assert list(listing) == _sdk_listing(client, f"ais://{bucket}/shards/", flags=[ListObjectFlag.ARCH_DIR])
    inside = {u.rsplit("/", 1)[1]: s for u, s in listing if "/s-0.tar/" in u}
    assert inside == {name: len(body) for name, body in members.items()}


@pytest.mark.parametrize("transport", ["pool", "session"])
def test_pages_are_asked_for_as_msgpack_through_the_pool_or_the_session(client, mixed, transport, monkeypatch):
    """The urllib3 pool where it sends what the session would (here: http://, no proxy), else the requests
    session: the same pages either way, each asked for once, as msgpack."""
    from ais_wds.objects import list_pages as module

    bucket, _ = mixed
    monkeypatch.setattr(module, "_pool_serves", lambda c: transport == "pool")
    with ListForwarder(client.endpoint) as fwd:
        via = Client(fwd.endpoint)
        with http_log() as log:
            pages = list(list_pages(via, parse_url(f"ais://{bucket}/a/"), page_size=2))
    assert [e[b"n"].decode() for page in pages for e in page] == sorted(NAMES[:-1], key=str.encode)
    assert len(pages) == fwd.lists == 3 and fwd.accepts == ["application/msgpack"] * 3 and fwd.json_pages == 0
    assert len([r for r in log.requests if r[2].startswith(f"/v1/buckets/{bucket}")]) == 3


def test_a_gateway_that_answers_json_gives_the_same_listing_byte_for_byte(client, mixed):
    """AIS answers JSON when the msgpack Accept does not reach it: the long keys are mapped to the short ones."""
    bucket, sizes = mixed
    with ListForwarder(client.endpoint, strip_msgpack=True) as fwd:
        via = Client(fwd.endpoint)
        listing = list_objects(f"ais://{bucket}/", via, page_size=97)
        entries = [e for page in list_pages(via, parse_url(f"ais://{bucket}/a/"), props="name,size,checksum,version")
                   for e in page]
    assert fwd.json_pages == fwd.lists >= 14  # 13 pages of 97, and one more
    assert list(listing) == _sdk_listing(client, f"ais://{bucket}/")
    assert dict((u.split("/", 3)[3], s) for u, s in listing) == sizes
    sdk = client.bucket(f"ais://{bucket}").list_objects_iter(prefix="a/", props="name,size,checksum,version")
    assert [(e[b"n"].decode(), e[b"s"], e[b"cs"].decode(), e[b"v"].decode()) for e in entries] == \
        [(e.name, e.size, e.checksum, e.version) for e in sdk]
    assert all(len(e[b"cs"]) == 16 for e in entries)


FAILED_TO_CALL = ('failed to call t[Xyzt8081]: Get "http://127.0.0.1:51081/v1/buckets/b?provider=ais": dial tcp '
                  '127.0.0.1:51081: connect: connection refused')


def test_a_page_the_gateway_could_not_get_from_a_target_is_asked_for_again(client, mixed):
    """A gateway answers 400 'failed to call t[...]' when a target it asked for the page is restarting."""
    bucket, _ = mixed
    with ListForwarder(client.endpoint, fail_lists=3, fail_message=FAILED_TO_CALL) as fwd:
        pages: List[int] = []
        listing = list_objects(f"ais://{bucket}/", Client(fwd.endpoint, retry_seconds=30), page_size=400,
                               on_page=pages.append)
    assert fwd.failed == 3 and fwd.lists == len(pages) + 3 == 4 + 3
    assert list(listing) == _sdk_listing(client, f"ais://{bucket}/")


def test_any_other_400_is_a_request_error_at_once(client, mixed):
    bucket, _ = mixed
    with ListForwarder(client.endpoint, fail_lists=100, fail_message="invalid list-objects message: bad flags") as fwd:
        with pytest.raises(RequestError, match="invalid list-objects message: bad flags") as info:
            list_objects(f"ais://{bucket}/", Client(fwd.endpoint, retry_seconds=30))
    assert fwd.lists == 1 and info.value.status == 400 and bucket in str(info.value)


def test_a_failed_to_call_that_outlasts_the_retry_budget_is_a_request_error(client, mixed):
    bucket, _ = mixed
    with ListForwarder(client.endpoint, fail_lists=1000, fail_message=FAILED_TO_CALL) as fwd:
        with pytest.raises(RequestError, match=r"failed to call t\[Xyzt8081\]"):
            list_objects(f"ais://{bucket}/", Client(fwd.endpoint, retry_seconds=1))
    assert 2 <= fwd.lists <= 10


def test_checksum_and_version_come_with_the_props_that_ask_for_them(client, mixed):
    bucket, _ = mixed
    entries = [e for page in list_pages(client, parse_url(f"ais://{bucket}/a/"), props="name,size,checksum,version")
               for e in page]
    sdk = client.bucket(f"ais://{bucket}").list_objects_iter(prefix="a/", props="name,size,checksum,version")
    assert [(e[b"n"].decode(), e[b"s"], e[b"cs"].decode(), e[b"v"].decode()) for e in entries] == \
        [(e.name, e.size, e.checksum, e.version) for e in sdk]
    assert all(len(e[b"cs"]) == 16 for e in entries)


def test_a_missing_bucket_is_a_bucket_not_found_error_naming_it(client):
    with pytest.raises(BucketNotFoundError, match="no-such-bucket-p20"):
        list_objects("ais://no-such-bucket-p20/x", client)


def test_archive_flag_constant_is_ais_ls_arch_dir():
    from aistore.sdk.list_object_flag import ListObjectFlag

    assert LS_ARCH_DIR == 1 << ListObjectFlag.ARCH_DIR.value


# --- cloud buckets and a remote AIS cluster (the clouds cluster's emulators) -------------------------------

@pytest.fixture(scope="module", params=["s3", "gs", "az", "remote"])
def provider_bucket(request, clouds_cluster):
    kind = request.param
    client = Client(clouds_cluster.endpoint, retry_seconds=60)
    name = f"lsm-{kind}-{uuid.uuid4().hex[:8]}"
    if kind == "remote":
        writer = Client(clouds_cluster.vars["AIS_REMOTE_ENDPOINT"])
        writer.sdk.bucket(name).create()
        base, write_base = f"ais://@remote/{name}", f"ais://{name}"
    else:
        clouds_cluster.run("cloud-bucket", f"{kind}://{name}")
        writer, base, write_base = client, f"{kind}://{name}", f"{kind}://{name}"
    rng = random.Random(kind)
    sizes = {f"p/o-{i:03d}-{rng.randbytes(2).hex()}.bin": rng.randint(1, 4000) for i in range(23)}
    sizes["p/ünï-名前.bin"] = 5
    sizes["q/outside.bin"] = 7
    for n, s in sizes.items():
        write_bytes(f"{write_base}/{n}", rng.randbytes(s), writer)
    return client, base, sizes


def test_cloud_and_remote_cluster_listings_match_the_sdk_byte_for_byte(provider_bucket):
    client, base, sizes = provider_bucket
    listing = list_objects(f"{base}/p/", client, page_size=10)
    expected = sorted((f"{base}/{n}", s) for n, s in sizes.items() if n.startswith("p/"))
    assert sorted(listing) == expected
    assert list(listing) == _sdk_listing(client, f"{base}/p/")


def test_the_token_goes_with_every_page_and_a_wrong_one_is_an_auth_error(secure_cluster):
    ca = secure_cluster.vars["AIS_CLIENT_CA"]
    good = Client(secure_cluster.endpoint, token=secure_cluster.vars["AIS_AUTHN_TOKEN"], ca_cert=ca)
    name = f"lsm-auth-{uuid.uuid4().hex[:8]}"
    good.sdk.bucket(name).create()
    for i in range(5):
        write_bytes(f"ais://{name}/k/x{i}.bin", b"abc"[:i % 3 + 1], good)
    assert list(list_objects(f"ais://{name}/k/", good, page_size=2)) == \
        [(f"ais://{name}/k/x{i}.bin", i % 3 + 1) for i in range(5)]
    with pytest.raises(AuthError, match="AIS_AUTHN_TOKEN|token"):
        list_objects(f"ais://{name}/k/", Client(secure_cluster.endpoint, token="not-a-token", ca_cert=ca))


def test_a_process_that_only_lists_never_imports_the_aistore_sdk(client, mixed, ais_endpoint):
    """Listing reads AIS's pages itself: the SDK (about 0.4 s to import here) is built on first use only."""
    import os
    import subprocess
    import sys

    bucket, sizes = mixed
    script = ("import sys\nfrom ais_wds import Client, list_objects\n"
              f"listing = list_objects('ais://{bucket}/', Client())\n"
              "print(len(listing), sum(listing.sizes), sorted(m for m in sys.modules if m.startswith('aistore')))\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "AIS_ENDPOINT": ais_endpoint})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(len(sizes)), str(sum(sizes.values())), "[]"]
