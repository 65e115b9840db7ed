"""The URL model: ``ais://bucket/path`` and cloud buckets reached through AIS.

Accepted schemes and the AIS provider each maps to:

    ais://            ais     (native AIS buckets)
    s3://  aws://     aws
    gs://  gcp://     gcp
    az://  azure://   azure
    oc://  oci://     oci

A bucket of a remote AIS cluster carries a namespace: ``ais://@uuid#namespace/bucket/path``
(the AIS CLI's syntax).  ``str(AISUrl.parse(s)) == s`` for every valid ``s``.

Pure logic; no I/O. Thread- and process-safe.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Iterable, List, Union

import braceexpand

from .errors import URLError

SCHEME_TO_PROVIDER = {
    "ais": "ais",
    "s3": "aws",
    "aws": "aws",
    "gs": "gcp",
    "gcp": "gcp",
    "az": "azure",
    "azure": "azure",
    "oc": "oci",
    "oci": "oci",
}
"""Every URL scheme ais_wds understands, mapped to the AIS provider name."""

PROVIDER_TO_SCHEME = {"ais": "ais", "aws": "s3", "gcp": "gs", "azure": "az", "oci": "oc"}
"""The canonical (short) scheme of each provider, used when ais_wds formats a URL itself."""


@dataclass(frozen=True)
class AISUrl:
    """One parsed URL: a bucket, and an object name or prefix inside it (``path``, may be empty).

    Attributes:
        scheme: the scheme as written (``ais``, ``s3``, ``aws``, ...).
        bucket: bucket name.
        path: object name or prefix, without a leading slash; ``""`` for the whole bucket.
        ns_uuid: remote cluster uuid of a namespaced bucket, else ``""``.
        ns_name: namespace name of a namespaced bucket, else ``""``.
    """

    scheme: str
    bucket: str
    path: str = ""
    ns_uuid: str = ""
    ns_name: str = ""

    @property
    def provider(self) -> str:
        """The AIS provider name: ``ais``, ``aws``, ``gcp``, ``azure`` or ``oci``."""
        return SCHEME_TO_PROVIDER[self.scheme]

    @property
    def has_namespace(self) -> bool:
        return bool(self.ns_uuid or self.ns_name)

    @classmethod
    def parse(cls, url: str) -> AISUrl:
        """Parse ``url``.

        Raises:
            URLError: not a string, no ``://``, unknown scheme, a bucket or namespace name AIS would refuse
                (see :func:`_check_bucket_name`), or an object name with ``.``/``..``/empty segments, a NUL,
                a leading ``~/`` or more than :data:`MAX_PATH_LENGTH` characters. Raised before any request.
        """
        if isinstance(url, AISUrl):
            return url
        if not isinstance(url, str):
            raise URLError(f"expected a URL string, got {type(url).__name__}", url=repr(url))
        scheme, sep, rest = url.partition("://")
        if not sep:
            raise URLError("not a URL (no '://')", url=url)
        scheme_lc = scheme.lower()
        if scheme_lc not in SCHEME_TO_PROVIDER:
            known = ", ".join(f"{s}://" for s in SCHEME_TO_PROVIDER)
            raise URLError(f"unknown scheme {scheme!r}", url=url, hint=f"ais_wds reads {known}")
        ns_uuid = ns_name = ""
        if rest.startswith("@"):
            ns, slash, rest = rest[1:].partition("/")
            ns_uuid, hash_, ns_name = ns.partition("#")
            if not slash or not (ns_uuid or ns_name):
                raise URLError("bad namespace; expected ais://@uuid#namespace/bucket/...", url=url)
        bucket, _, path = rest.partition("/")
        if not bucket:
            raise URLError("no bucket name", url=url)
        _check_bucket_name(bucket, url)
        if ns_uuid or ns_name:
            _check_namespace(ns_uuid, ns_name, url)
        _check_object_path(path, url)
        return cls(scheme_lc, bucket, path, ns_uuid, ns_name)

    def __str__(self) -> str:
        ns = ""
        if self.has_namespace:
            ns = f"@{self.ns_uuid}#{self.ns_name}/" if self.ns_name else f"@{self.ns_uuid}/"
        return f"{self.scheme}://{ns}{self.bucket}/{self.path}" if self.path else f"{self.scheme}://{ns}{self.bucket}"

    @property
    def bucket_url(self) -> str:
        """The URL of the bucket alone, with a trailing slash: ``ais://bucket/``."""
        return str(self.with_path("")) + "/"

    def with_path(self, path: str) -> AISUrl:
        """The same bucket with another object name or prefix."""
        return AISUrl(self.scheme, self.bucket, path, self.ns_uuid, self.ns_name)

    def join(self, name: str) -> str:
        """The URL string of object ``name`` (a full object name) in this URL's bucket."""
        return str(self.with_path(name))


MAX_NAME_LENGTH = 64
"""AIS's longest bucket (and namespace) name (``cos.MaxNameLength``)."""

MAX_UUID_LENGTH = 32
"""AIS's longest remote-cluster uuid (``cos.IsAlphaNice``)."""

MAX_PATH_LENGTH = 4096
"""The longest object name or prefix ais_wds sends (a Linux path; AIS stores longer names specially,
but an HTTP request line that long is a mistake, not a dataset)."""

_NAME_CHARS = re.compile(r"[A-Za-z0-9_.-]+")
_UUID_CHARS = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?")


def _check_bucket_name(bucket: str, url: str) -> None:
    """AIS's own bucket-name rule (``cmn.Bck.ValidateName``): 1-64 of ``[A-Za-z0-9_.-]``, no ``..``,
    no leading ``.`` (reserved for AIS's system buckets)."""
    if len(bucket) > MAX_NAME_LENGTH:
        raise URLError(f"bucket name is too long: {len(bucket)} > {MAX_NAME_LENGTH} characters", url=url)
    if not _NAME_CHARS.fullmatch(bucket) or ".." in bucket:
        raise URLError(f"invalid bucket name {bucket!r}: AIS allows letters, digits, '-', '_' and single dots",
                       url=url)
    if bucket.startswith("."):
        raise URLError(f"invalid bucket name {bucket!r}: a leading '.' is reserved for AIS system buckets",
                       url=url)


def _check_namespace(ns_uuid: str, ns_name: str, url: str) -> None:
    """AIS's namespace rule (``cmn.Ns.validate``): the uuid alphanumeric with inner '-'/'_' (<= 32), the
    name like a bucket name."""
    if ns_uuid and (len(ns_uuid) > MAX_UUID_LENGTH or not _UUID_CHARS.fullmatch(ns_uuid)):
        raise URLError(f"invalid namespace uuid {ns_uuid!r}: AIS allows up to {MAX_UUID_LENGTH} letters, digits "
                       "and inner '-' or '_'", url=url)
    if ns_name and (len(ns_name) > MAX_NAME_LENGTH or not _NAME_CHARS.fullmatch(ns_name) or ".." in ns_name):
        raise URLError(f"invalid namespace name {ns_name!r}: AIS allows up to {MAX_NAME_LENGTH} letters, digits, "
                       "'-', '_' and single dots", url=url)


def _check_object_path(path: str, url: str) -> None:
    """AIS's object-name rule (``cos.ValidateRname``): no ``.`` or ``..`` path segment (they would let the
    HTTP layer move a request into another bucket), no leading ``~/``; also no empty segment, no NUL,
    and at most :data:`MAX_PATH_LENGTH` characters. A trailing ``/`` (a prefix) is allowed."""
    if not path:
        return
    if len(path) > MAX_PATH_LENGTH:
        raise URLError(f"object name is too long: {len(path)} > {MAX_PATH_LENGTH} characters", url=url)
    if "\x00" in path:
        raise URLError("object name contains a NUL character", url=url)
    if path.startswith("~/"):
        raise URLError("object name starts with '~/' (AIS refuses it)", url=url)
    segments = path.split("/")
    if path.endswith("/"):
        segments.pop()
    for seg in segments:
        if seg in (".", ".."):
            raise URLError(f"object name has a {seg!r} segment; AIS refuses them (and they could leave the bucket)",
                           url=url, hint="write the object name without '.' or '..' segments")
        if not seg:
            raise URLError("object name has an empty segment ('//' or a leading '/')", url=url,
                           hint="write ais://bucket/dir/name with single slashes")


def parse_url(url: Union[str, AISUrl]) -> AISUrl:
    """Parse one URL; see :meth:`AISUrl.parse`."""
    return url if isinstance(url, AISUrl) else AISUrl.parse(url)


def is_ais_url(url: str) -> bool:
    """True when ``url`` has a scheme ais_wds handles (it may still be malformed otherwise)."""
    scheme, sep, _ = url.partition("://") if isinstance(url, str) else ("", "", "")
    return bool(sep) and scheme.lower() in SCHEME_TO_PROVIDER


def expand_urls(urls: Union[str, Iterable[str]]) -> List[str]:
    """Expand brace patterns (``train-{000..099}.tar`` keeps the zero padding; ``{a,b}`` too).

    Accepts one string or an iterable of strings; returns the expansion in order. Validates every
    result with :func:`parse_url`.

    Raises:
        URLError: any expanded URL is malformed.
    """
    if isinstance(urls, (str, AISUrl)):
        urls = [str(urls)]
    out: List[str] = []
    for pattern in urls:
        for url in braceexpand.braceexpand(str(pattern)):
            parse_url(url)
            out.append(url)
    return out
