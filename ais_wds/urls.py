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
            URLError: not a string, no ``://``, unknown scheme, empty bucket, or a bad namespace.
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
        if any(c in bucket for c in " \t\n?#"):
            raise URLError(f"invalid bucket name {bucket!r}", url=url)
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
