"""Listing core against the live cluster."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from ais_wds import (
    BucketNotFoundError,
    Client,
    ConnectError,
    EmptyListingError,
    Listing,
    list_objects,
    write_bytes,
)
from tests.support.http_log import http_log


@pytest.fixture(scope="module")
def ten_thousand(client, module_bucket):
    names = [f"many/obj-{i:05d}" for i in range(10_000)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: write_bytes(f"ais://{module_bucket}/{n}", n.encode(), client), names))
    for i in range(3):
        write_bytes(f"ais://{module_bucket}/other/x{i}.bin", b"x" * (i + 1), client)
    return module_bucket, names


def test_listing_10k_objects_across_several_pages_returns_each_once_with_sizes(client, ten_thousand):
    bucket, names = ten_thousand
    pages = []
    listing = list_objects(f"ais://{bucket}/many/", client, page_size=2000, on_page=pages.append)
    assert len(pages) >= 5
    assert listing.urls == [f"ais://{bucket}/{n}" for n in names]
    assert listing.sizes == [len(n) for n in names]
    assert listing.total_size == sum(len(n) for n in names)


def test_several_prefixes_are_listed_in_the_order_given(client, ten_thousand):
    bucket, _ = ten_thousand
    listing = list_objects([f"ais://{bucket}/other/", f"ais://{bucket}/many/obj-0000"], client)
    assert listing.urls[:3] == [f"ais://{bucket}/other/x{i}.bin" for i in range(3)]
    assert listing.sizes[:3] == [1, 2, 3]
    assert listing.urls[3:] == [f"ais://{bucket}/many/obj-0000{i}" for i in range(10)]


def test_brace_patterns_are_expanded_before_listing(client, ten_thousand):
    bucket, _ = ten_thousand
    listing = list_objects(f"ais://{bucket}/other/x{{0,2}}.bin", client)
    assert listing.urls == [f"ais://{bucket}/other/x0.bin", f"ais://{bucket}/other/x2.bin"]


def test_listing_round_trips_through_a_msgpack_file(client, ten_thousand, tmp_path):
    bucket, _ = ten_thousand
    listing = list_objects(f"ais://{bucket}/", client)
    path = tmp_path / "listing.msgpack"
    listing.save(path)
    loaded = Listing.load(path)
    assert loaded == listing and len(loaded) == 10_003
    assert list_objects(str(path), client) == listing


def test_sdk_bucket_and_object_group_sources_are_listed(client, ten_thousand):
    bucket, _ = ten_thousand
    sdk_bucket = client.sdk.bucket(bucket)
    assert len(list_objects(sdk_bucket, client)) == 10_003
    group = sdk_bucket.objects(obj_names=["other/x1.bin", "other/x0.bin"])
    listing = list_objects(group, client)
    assert listing.urls == [f"ais://{bucket}/other/x1.bin", f"ais://{bucket}/other/x0.bin"]


def test_a_prefix_that_matches_nothing_is_an_error_naming_the_prefix(client, ten_thousand):
    bucket, _ = ten_thousand
    with pytest.raises(EmptyListingError) as info:
        list_objects([f"ais://{bucket}/other/", f"ais://{bucket}/nothing-here/"], client)
    assert f"ais://{bucket}/nothing-here/" in str(info.value)
    assert len(list_objects(f"ais://{bucket}/nothing-here/", client, allow_empty=True)) == 0


def test_a_missing_bucket_is_a_bucket_not_found_error(client):
    with pytest.raises(BucketNotFoundError, match="ais://no-such-bucket-ais-wds"):
        list_objects("ais://no-such-bucket-ais-wds/x", client)


def test_an_unreachable_endpoint_fails_within_seconds():
    # counted, not timed: a few refused connections (the SDK's own attempts), no retry loop of ours
    with http_log() as log:
        with pytest.raises(ConnectError, match="127.0.0.1:9"):
            list_objects("ais://b/", Client("http://127.0.0.1:9"))
    assert not log.retries and not log.requests and 1 <= len(log.connections) <= 6, log.summary()
