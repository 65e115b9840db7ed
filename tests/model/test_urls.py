import pickle

import pytest

from ais_wds import AISUrl, URLError, expand_urls, parse_url
from ais_wds.urls import SCHEME_TO_PROVIDER


@pytest.mark.parametrize("url", [
    "ais://bucket", "ais://bucket/", "ais://b/dir/obj.tar", "s3://b/x", "aws://b/x", "gs://b/a/b/c",
    "gcp://b/x", "az://b/x", "azure://b/x", "oc://b/x", "oci://b/x", "ais://@uuid#ns/b/obj",
    "ais://@uuid/b/obj", "ais://b/name with spaces ü.jpg", "ais://b/a.b.c.d",
])
def test_parse_then_format_gives_back_the_same_url(url):
    assert str(parse_url(url)) == url.rstrip("/") or str(parse_url(url)) + "/" == url


@pytest.mark.parametrize("scheme,provider", [
    ("ais", "ais"), ("s3", "aws"), ("aws", "aws"), ("gs", "gcp"), ("gcp", "gcp"),
    ("az", "azure"), ("azure", "azure"), ("oc", "oci"), ("oci", "oci"),
])
def test_each_scheme_maps_to_its_ais_provider(scheme, provider):
    u = parse_url(f"{scheme}://bkt/p/q")
    assert (u.provider, u.bucket, u.path) == (provider, "bkt", "p/q")


def test_namespace_is_parsed_from_at_uuid_hash_name():
    u = parse_url("ais://@Uabc#remote-ns/bucket/path/obj")
    assert (u.ns_uuid, u.ns_name, u.bucket, u.path) == ("Uabc", "remote-ns", "bucket", "path/obj")
    assert u.has_namespace


def test_join_and_bucket_url_keep_scheme_and_namespace():
    u = parse_url("s3://bkt/prefix/")
    assert u.join("prefix/a.jpg") == "s3://bkt/prefix/a.jpg"
    assert u.bucket_url == "s3://bkt/"
    assert parse_url("ais://@u#n/b/x").bucket_url == "ais://@u#n/b/"


@pytest.mark.parametrize("bad,fragment", [
    ("bucket/obj", "no '://'"),
    ("ftp://b/x", "unknown scheme"),
    ("ais:///x", "no bucket"),
    ("ais://@/b/x", "bad namespace"),
    ("ais://@u#n", "bad namespace"),
])
def test_malformed_urls_raise_urlerror_naming_the_url(bad, fragment):
    with pytest.raises(URLError) as info:
        parse_url(bad)
    assert bad in str(info.value) and fragment in str(info.value)
    assert isinstance(info.value, ValueError)


def test_unknown_scheme_error_lists_the_schemes_that_work():
    with pytest.raises(URLError, match="s3://"):
        parse_url("hdfs://b/x")


def test_brace_expansion_keeps_zero_padding():
    urls = expand_urls("ais://b/train-{000..003}.tar")
    assert urls == [f"ais://b/train-{i:03d}.tar" for i in range(4)]
    assert expand_urls(["ais://b/{a,b}.tar", "s3://c/x"]) == ["ais://b/a.tar", "ais://b/b.tar", "s3://c/x"]
    assert len(expand_urls("ais://b/shard-{000000..000999}.tar")) == 1000
    assert expand_urls("ais://b/shard-{000000..000999}.tar")[-1] == "ais://b/shard-000999.tar"


def test_expansion_validates_every_url():
    with pytest.raises(URLError):
        expand_urls("{ais,ftp}://b/x")


def test_urls_are_immutable_values_that_pickle():
    import dataclasses

    u = parse_url("gs://b/x")
    for field in dataclasses.fields(u):  # every field refuses assignment and deletion, and stays as parsed
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(u, field.name, "other")
        with pytest.raises(dataclasses.FrozenInstanceError):
            delattr(u, field.name)
    assert str(u) == "gs://b/x" and (u.bucket, u.path) == ("b", "x")
    # a value: equal parses are equal and hash alike (usable as dict keys and in sets)
    again = parse_url("gs://b/x")
    assert again == u and again is not u and hash(again) == hash(u) and len({u, again}) == 1
    back = pickle.loads(pickle.dumps(u))
    assert back == u and back is not u and hash(back) == hash(u) and str(back) == "gs://b/x"
    assert AISUrl.parse(u) is u  # parsing a parsed URL gives it back: nothing to copy, nothing can change it
    assert set(SCHEME_TO_PROVIDER.values()) == {"ais", "aws", "gcp", "azure", "oci"}
