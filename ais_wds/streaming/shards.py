"""Shard lists from AIS prefixes, for ``wds.WebDataset``, ``SimpleShardList`` or ``ResampledShards``."""

from __future__ import annotations

from typing import Iterable, List, Sequence, Union

from .._core.dist import run_on_rank0_and_share
from ..client import Client
from ..errors import EmptyListingError
from ..listing import Listing, is_listing_file, list_objects
from ..urls import expand_urls, parse_url

DEFAULT_SHARD_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.lz4")


class ShardURL(str):
    """A shard URL string made by ais_wds: it behaves as ``str`` and marks the URL as one to open
    through AIS. Plain ``wds.WebDataset`` opens a ``ShardURL`` of any scheme AIS reaches (``gs://``,
    ``s3://``, ...) through AIS, while a plain ``str`` of a cloud scheme stays webdataset's own unless
    routed (the rule: :func:`ais_wds.streaming.opener.opens_through_ais`). The mark survives pickling;
    unpickling one in a spawned DataLoader worker imports ais_wds, which registers the AIS gopen handlers
    there too."""

    __slots__ = ()

    def __reduce__(self):
        return (ShardURL, (str(self),))


def shard_urls(
    sources: Union[str, Listing, Sequence[Union[str, Listing]]],
    *,
    suffixes: Iterable[str] = DEFAULT_SHARD_SUFFIXES,
    client: Union[Client, str, None] = None,
) -> List[ShardURL]:
    """Sorted URLs of the shards under one or many prefixes (any provider), or in a saved listing.

    A source that already names shards (``ais://b/train-{000..099}.tar``: it ends with one of the
    ``suffixes`` after brace expansion) is expanded, not listed. Anything else is a prefix and is listed
    once (on rank 0 when ``torch.distributed`` is initialised, then shared).

    Args:
        sources: prefix URL(s), explicit shard URL(s) or patterns, Listing(s), or ``.msgpack`` listing paths.
        suffixes: which object names count as shards.
        client: Client or endpoint; default from the environment.

    Returns:
        De-duplicated shard URLs, sorted.

    Raises:
        EmptyListingError: no shard matched (names the sources).
        URLError, BucketNotFoundError, ConnectError: bad URL or cluster errors.
    """
    suffixes = tuple(suffixes)
    if isinstance(sources, (str, Listing)):
        sources = [sources]
    explicit: List[str] = []
    to_list: list = []
    for src in sources:
        if isinstance(src, str) and not is_listing_file(src):
            expanded = expand_urls(src)
            if all(u.endswith(suffixes) for u in expanded):
                explicit.extend(expanded)
                continue
        to_list.append(src)

    def _list() -> List[str]:
        found = list(explicit)
        if to_list:
            listing = list_objects(to_list, client, allow_empty=True)
            found.extend(u for u in listing.urls if u.endswith(suffixes))
        return found

    urls = run_on_rank0_and_share(_list) if to_list else explicit
    if not urls:
        raise EmptyListingError(f"no shard ({', '.join(suffixes)}) found", url=", ".join(map(str, sources)))
    for u in urls:
        parse_url(u)
    return [ShardURL(u) for u in sorted(set(urls))]
