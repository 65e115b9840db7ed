"""The listing core: turn prefixes, URLs and aistore SDK sources into a compact list of (url, size).

A job lists once (``list_objects``), saves the result (``Listing.save``), and every rank and worker
loads it (``Listing.load``) or receives it pickled; nothing below lists per worker.

Listing pages through the aistore SDK (msgpack replies, the backend's largest page size).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

import msgpack

from ._core.retry import translate
from .client import Client
from .errors import AISWdsError, EmptyListingError
from .urls import PROVIDER_TO_SCHEME, AISUrl, expand_urls, parse_url

logger = logging.getLogger(__name__)

LISTING_KIND = "ais-wds-listing-v1"
UNKNOWN_SIZE = -1

Source = Union[str, AISUrl, "Listing", Any]
"""What ``list_objects`` accepts: a URL or prefix string (braces expanded), an AISUrl, a Listing,
a path to a saved listing (``*.msgpack``), an aistore SDK ``Bucket`` or ``ObjectGroup``."""


@dataclass
class Listing:
    """An ordered list of objects: parallel lists of URL strings and sizes (``-1``: unknown).

    Cheap to pickle (two lists); safe to share read-only between threads.
    """

    urls: List[str] = field(default_factory=list)
    sizes: List[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.urls)

    def __iter__(self) -> Iterator[Tuple[str, int]]:
        return zip(self.urls, self.sizes)

    def __getitem__(self, i: int) -> Tuple[str, int]:
        return self.urls[i], self.sizes[i]

    @property
    def total_size(self) -> int:
        """Sum of the known sizes."""
        return sum(s for s in self.sizes if s > 0)

    def append(self, url: str, size: int = UNKNOWN_SIZE) -> None:
        self.urls.append(url)
        self.sizes.append(size)

    def extend(self, other: Listing) -> None:
        self.urls.extend(other.urls)
        self.sizes.extend(other.sizes)

    def select(self, indices: Iterable[int]) -> Listing:
        """A new Listing of the entries at ``indices``, in that order."""
        idx = list(indices)
        return Listing([self.urls[i] for i in idx], [self.sizes[i] for i in idx])

    def filter(self, keep: Callable[[str], bool]) -> Listing:
        """A new Listing of the entries whose URL satisfies ``keep``."""
        return self.select(i for i, u in enumerate(self.urls) if keep(u))

    def sorted(self) -> Listing:
        return self.select(sorted(range(len(self)), key=self.urls.__getitem__))

    def save(self, path: Union[str, os.PathLike[str]]) -> None:
        """Write the listing as msgpack to ``path`` atomically (temp file + rename)."""
        tmp = f"{os.fspath(path)}.tmp.{os.getpid()}"
        with open(tmp, "wb") as f:
            msgpack.pack({"kind": LISTING_KIND, "urls": self.urls, "sizes": self.sizes}, f)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Union[str, os.PathLike[str]]) -> Listing:
        """Read a listing written by :meth:`save`.

        Raises:
            AISWdsError: the file is not an ais_wds listing.
        """
        with open(path, "rb") as f:
            try:
                data = msgpack.unpack(f, raw=False)
            except Exception as e:  # noqa: BLE001 - any decoding failure means: not a listing file
                raise AISWdsError(f"not a msgpack listing: {e}", url=os.fspath(path)) from None
        if not isinstance(data, dict) or data.get("kind") != LISTING_KIND:
            raise AISWdsError(f"not an ais_wds listing (expected kind {LISTING_KIND!r})", url=os.fspath(path),
                              hint="write it with `ais-wds ls --save FILE` or Listing.save")
        return cls(list(data["urls"]), list(data["sizes"]))


def is_listing_file(source: Any) -> bool:
    """True for a local path (str or PathLike) ending in ``.msgpack`` that exists."""
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    return isinstance(source, str) and "://" not in source and source.endswith(".msgpack") and os.path.exists(source)


def list_objects(
    sources: Union[Source, Sequence[Source]],
    client: Union[Client, str, None] = None,
    *,
    allow_empty: bool = False,
    page_size: int = 0,
    on_page: Optional[Callable[[int], None]] = None,
    archive_members: bool = False,
) -> Listing:
    """List every object under one or many sources, in source order (each source sorted by name).

    Args:
        sources: one source or a list of them (see :data:`Source`). A URL is a prefix: ``ais://b/train-``
            lists every object whose name starts with ``train-``; ``ais://b`` lists the whole bucket.
        client: a :class:`Client` or an endpoint string; default from the environment.
        allow_empty: when False (the default) a source that matches nothing raises.
        page_size: objects per listing page (0: the backend's maximum).
        on_page: called with the running count after every page (progress display).
        archive_members: also list the members of shards as ``shard.tar/member`` entries (AIS's
            LsArchDir: the cluster reads the archives; nothing is sent to the client but names and sizes).

    Returns:
        A :class:`Listing` of full URLs (in the scheme each source was written with) and sizes.

    Raises:
        EmptyListingError: a source matched no object (unless ``allow_empty``).
        BucketNotFoundError, ConnectError, RequestError: from AIS.
        URLError: a malformed URL.
    """
    client = Client.of(client)
    if isinstance(sources, (str, AISUrl, Listing, os.PathLike)) or _is_sdk_source(sources):
        sources = [sources]
    listing = Listing()
    for source in sources:
        for one in _expand(source):
            part = _list_one(one, client, page_size, on_page, base=len(listing), archive_members=archive_members)
            if not len(part) and not allow_empty:
                raise EmptyListingError("prefix matched no object", url=_describe(one))
            listing.extend(part)
    return listing


def _expand(source: Source) -> List[Source]:
    if isinstance(source, str) and not is_listing_file(source):
        return list(expand_urls(source))
    return [source]


def _is_sdk_source(obj: Any) -> bool:
    return hasattr(obj, "list_all_objects_iter") and not isinstance(obj, (str, list, tuple))


def _describe(source: Source) -> str:
    if isinstance(source, (str, AISUrl, Listing)):
        return str(source) if not isinstance(source, Listing) else f"a listing of {len(source)} objects"
    if _is_sdk_source(source):
        bck: Any = getattr(source, "bck", source)
        return f"{PROVIDER_TO_SCHEME.get(str(_provider(bck)), 'ais')}://{bck.name}/ ({type(source).__name__})"
    return repr(source)


def _provider(bucket: Any) -> str:
    p = bucket.provider
    return str(getattr(p, "value", p))


def _bucket_url(bucket: Any) -> AISUrl:
    ns = getattr(bucket, "namespace", None)
    return AISUrl(PROVIDER_TO_SCHEME.get(_provider(bucket), "ais"), bucket.name, "",
                  getattr(ns, "uuid", "") or "" if ns else "", getattr(ns, "name", "") or "" if ns else "")


def _list_one(source: Source, client: Client, page_size: int, on_page: Optional[Callable[[int], None]],
              base: int, archive_members: bool = False) -> Listing:
    if isinstance(source, Listing):
        return source
    if isinstance(source, os.PathLike) or (isinstance(source, str) and is_listing_file(source)):
        return Listing.load(source)
    if _is_sdk_source(source):
        return _list_sdk_source(source, client)
    url = parse_url(source)
    return _list_prefix(url, client, page_size, on_page, base, archive_members)


def _list_prefix(url: AISUrl, client: Client, page_size: int, on_page: Optional[Callable[[int], None]],
                 base: int, archive_members: bool = False) -> Listing:
    bucket = client.bucket(url)
    flags = None
    if archive_members:
        from aistore.sdk.list_object_flag import ListObjectFlag

        flags = [ListObjectFlag.ARCH_DIR]
    out = Listing()
    token, uuid = "", ""
    try:
        while True:
            page = bucket.list_objects(prefix=url.path, props="name,size", page_size=page_size, uuid=uuid,
                                       continuation_token=token, flags=flags)
            for entry in page.entries:
                # directories / virtual entries carry no size and end with '/'
                if entry.name.endswith("/"):
                    continue
                out.append(url.join(entry.name), int(entry.size or 0))
            if on_page:
                on_page(base + len(out))
            token, uuid = page.continuation_token, page.uuid
            if not token:
                break
    except AISWdsError:
        raise
    except Exception as e:
        raise translate(e, str(url), endpoint=client.endpoint) from e
    logger.debug("listed %d objects under %s", len(out), url)
    return out


def _list_sdk_source(source: Any, client: Client) -> Listing:
    """List a ``Bucket`` (names and sizes) or an ``ObjectGroup`` (names; sizes unknown, no HEAD)."""
    out = Listing()
    if hasattr(source, "bck"):  # ObjectGroup
        base = _bucket_url(source.bck)
        try:
            for obj in source.list_all_objects_iter(props=None):
                out.append(base.join(obj.name), UNKNOWN_SIZE)
        except Exception as e:
            raise translate(e, _describe(source), endpoint=client.endpoint) from e
        return out
    # a Bucket: list through our own client so that paging and errors are the same as for URLs
    return _list_prefix(_bucket_url(source), client, 0, None, 0)
