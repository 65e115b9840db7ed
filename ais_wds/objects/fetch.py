"""Whole-object fetches for small objects: direct-to-target GETs and batch GETs (part of the reader core).

Per-object GETs of small objects are bound by per-request cost, not bandwidth. Two strategies:

* :class:`DirectGetter` (``get``): one GET per object, sent straight to the target that owns the object
  (computed on the client from the cluster map, as the SDK's ``get_reader(direct=True)`` does), over
  the client's urllib3 pool. This skips the gateway's redirect and the requests/SDK layers (about 2x the
  objects/s of ``read_bytes`` on a small cluster). Anything unusual (a non-200 answer, a short body,
  a connection failure, a namespaced bucket) falls back to :func:`ais_wds.reader.read_bytes`, which
  tries the target once more, then the gateway, resumes, retries and raises the core's typed errors.
  A target that refuses while the gateway serves the object turns the direct path off for a while
  (``Connections.direct_unreachable``: targets unreachable from clients, e.g. behind a Kubernetes
  service); a target that is down (the gateway fails too) does not. Targets that deny direct requests (a
  cluster with AuthN answers 403 "direct target access denied" to requests that did not come through the
  gateway) turn the direct path off for the client in this process (``Connections.direct_allowed``, the
  switch the reader core and pipelined range GETs consult too), so each object costs no refused request.
* :class:`BatchGetter` (``batch``): many objects in one AIS batch GET (``/v1/ml/moss``, built with the
  SDK's ``client.batch``); the reply is one tar, entries in request order, streamed through the tar
  walk the caller hands in (``members``: ``ais_wds.tar.iter_members``; this layer knows no archive
  format) instead of ``tarfile``. AIS 5.0 holds a reply about 0.1 s when it carries
  objects from other targets (the designated target waits for its receive queue to stay quiet for
  ``noRxWindow``, xact/xs/moss.go), then serves tens of thousands of objects/s, so batch GETs pay off
  with hundreds of objects per request and several requests in flight (see ``ais_wds.objects.prefetch``).
  Entries AIS reports missing, and whole failed requests, are fetched again one by one, so errors are
  exactly those of the per-object path. A reply that breaks off part-way (a cut connection, a reply cut
  short after a target restart, or one that stalls longer than ``BATCH_READ_TIMEOUT`` between bytes:
  batch requests use a client of their own with that read timeout) keeps the entries that arrived whole
  and fetches only the others one by one.

Both return, for a list of URLs, a list in the same order whose items are ``bytes`` or the
:class:`~ais_wds.errors.AISWdsError` for that URL (never raised for per-object failures, so a caller
can skip or raise per item). Cluster-wide failures (:class:`ConnectError`) are returned per item too.

Thread safety: a getter may be shared by threads. Process safety: connections and the cluster map
belong to the :class:`Client` (one set per process, see ``ais_wds._core.connections``); a getter
pickles only its settings.
"""

from __future__ import annotations

import logging
import time
from typing import Any, BinaryIO, Dict, Iterator, List, Optional, Protocol, Sequence, Tuple, Union

from ..client import Client
from ..errors import AISWdsError, TarFormatError
from ..metrics import core as metrics
from ..urls import AISUrl, parse_url
from .reader import read_bytes

logger = logging.getLogger(__name__)

Result = Union[bytes, AISWdsError]
"""One fetched object: its bytes, or the error for its URL."""

MISSING_DIR = "__404__/"
BATCH_FAILURES_OFF = 3
"""Whole batch requests failing in a row after which a BatchGetter uses per-object GETs for a while."""
BATCH_OFF_SECONDS = 60.0
BATCH_UNSTABLE_OFF_SECONDS = 10.0
"""Seconds a BatchGetter uses per-object GETs after a batch reply showed the cluster changing
(see :func:`_cluster_changing`)."""


class MemberWalk(Protocol):
    """Walks a tar stream into ``(member name, bytes)`` pairs, in archive order, raising
    :class:`~ais_wds.errors.TarFormatError` on a broken archive: :func:`ais_wds.tar.iter_members`."""

    def __call__(self, stream: BinaryIO, *, url: Optional[str] = None) -> Iterator[Tuple[str, bytes]]: ...


class Getter(Protocol):
    """What the prefetch engine and the datasets need: fetch whole objects, results in order."""

    def fetch(self, urls: Sequence[str]) -> List[Result]:
        """Fetch every URL; item i is the bytes of ``urls[i]`` or the error for it."""
        ...


def fetch_one(client: Client, url: str) -> Result:
    """The core per-object fetch: :func:`read_bytes`, with its error as a value."""
    try:
        return read_bytes(url, client)
    except AISWdsError as e:
        return e


class DirectGetter:
    """Per-object GETs straight to the owning target, falling back to the reader core.

    Args:
        client: the :class:`Client`.
        direct: False sends every GET through :func:`read_bytes` (the gateway path) instead.
    """

    def __init__(self, client: Union[Client, str, None] = None, *, direct: bool = True):
        self.client = Client.of(client)
        self.direct = direct
        self.fallbacks = 0  # GETs that took the reader core's path instead (diagnostics; per process)

    def __getstate__(self) -> Dict[str, Any]:
        return {"client": self.client, "direct": self.direct}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["client"], direct=state["direct"])  # type: ignore[misc]

    def fetch(self, urls: Sequence[str]) -> List[Result]:
        """Fetch each URL in turn (the prefetch engine runs several getters' calls in threads)."""
        return [self.get(u) for u in urls]

    def get(self, url: str) -> Result:
        """The bytes of one object, or its error (see the module docstring)."""
        if not self.direct or not self.client.connections().direct_allowed():  # targets deny direct GETs
            return fetch_one(self.client, url)
        data = self._try_direct(url)
        if data is not None:
            return data
        self.fallbacks += 1
        return fetch_one(self.client, url)

    # -- internals --------------------------------------------------------------------------------
    def _try_direct(self, url: str) -> Optional[bytes]:
        """The object's bytes over the direct path, or None to fall back to the reader core."""
        conn = self.client.connections()
        started = time.perf_counter()
        try:
            u = parse_url(url)
            resp, _ = conn.open_direct(u, self.client.bucket(u), preload=True)
        except Exception as e:  # noqa: BLE001 - any failure: use the gateway path, which classifies it
            logger.debug("%s: direct GET failed (%s: %s); falling back", url, type(e).__name__, e)
            return None
        if resp is None:  # the reader core tries the target, then the gateway, and decides what a refusal means
            return None
        data: bytes = resp.data
        metrics.get_done(started, len(data), direct=True, url=url)
        return data


class BatchGetter:
    """Many objects per AIS batch GET (moss), falling back to per-object GETs for what it cannot serve.

    Args:
        client: the :class:`Client`.
        members: the tar walk that splits a batch reply (:func:`ais_wds.tar.iter_members`).
        single: the per-object getter used for entries AIS reports missing, for failed requests and
            for namespaced buckets (default: a :class:`DirectGetter` on the same client).
    """

    def __init__(self, client: Union[Client, str, None] = None, *, members: MemberWalk,
                 single: Optional[DirectGetter] = None):
        self.client = Client.of(client)
        self.members = members
        self.single = single if single is not None else DirectGetter(self.client)
        self._failures = 0  # whole batch requests failed in a row (this process)
        self._off_until = 0.0
        self._mapped = False  # this process has a cluster map for the per-object fallback

    def __getstate__(self) -> Dict[str, Any]:
        return {"client": self.client, "members": self.members, "single": self.single}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["client"], members=state["members"], single=state["single"])  # type: ignore[misc]

    def fetch(self, urls: Sequence[str]) -> List[Result]:
        """Fetch ``urls`` with one batch request (one per call; callers bound the batch size)."""
        if not urls:
            return []
        parsed = [parse_url(u) for u in urls]
        if len(urls) == 1 or time.monotonic() < self._off_until:
            return self.single.fetch(urls)
        if any(u.has_namespace or not u.path for u in parsed):
            logger.debug("batch GET cannot name a remote cluster's bucket (%s): fetching %d objects one by one",
                         next(str(u) for u in parsed if u.has_namespace or not u.path), len(urls))
            return self.single.fetch(urls)
        conn = self.client.connections()
        if not self._mapped:  # the per-object fallback goes straight to the targets even if the gateway is down
            self._mapped = conn.cluster_map() is not None
        metrics.count("batch_gets")
        try:
            results = self._request(parsed, urls)
        except Exception as e:  # noqa: BLE001 - the per-object path reports precise per-URL errors
            metrics.count("batch_get_fallbacks")
            self._failures += 1
            off = ""
            if _cluster_changing(e):
                off = self._pause(BATCH_UNSTABLE_OFF_SECONDS)
            elif self._failures >= BATCH_FAILURES_OFF:
                off = self._pause(BATCH_OFF_SECONDS)
            logger.warning("batch GET of %d objects failed (%s: %s); fetching them one by one%s", len(urls),
                           type(e).__name__, " ".join(str(e).split())[:300], off)
            return self.single.fetch(urls)
        self._failures = 0
        # entries AIS could not serve in the batch (None): ask again for the exact error
        return [r if r is not None else self.single.get(urls[i]) for i, r in enumerate(results)]

    def _pause(self, seconds: float) -> str:
        """Per-object GETs only for ``seconds``; the words for the log line."""
        self._off_until = max(self._off_until, time.monotonic() + seconds)
        return f"; batch GET off for {seconds:.0f}s"

    def _request(self, parsed: Sequence[AISUrl], urls: Sequence[str]) -> List[Optional[Result]]:
        """One batch GET. A reply that breaks off (cut, stalled past the batch read timeout, or short
        after a target restart) keeps the entries that arrived whole; the rest come back as None, to be
        fetched one by one. Raises only when nothing arrived. A reply that shows the cluster changing
        (short, stalled, or an error from AIS) turns batch GET off for :data:`BATCH_UNSTABLE_OFF_SECONDS`."""
        first = parsed[0]
        sdk = self.client.connections().batch_sdk
        batch = sdk.batch(bucket=self.client.bucket(first), cont_on_err=True, streaming_get=True)
        for u in parsed:
            batch.add(u.path, bck=u.bucket, provider=u.provider)
        started = time.perf_counter()
        raw = batch.get(raw=True)
        out: List[Optional[Result]] = []
        try:
            self._split(raw, parsed, urls, out)
        except Exception as e:  # noqa: BLE001 - whatever broke the reply, the per-object path fetches the rest
            raw.close()
            if not out:
                raise
            off = self._pause(BATCH_UNSTABLE_OFF_SECONDS) if _cluster_changing(e) else ""
            metrics.count("batch_get_fallbacks")
            logger.warning("batch GET of %d objects broke off after %d entries (%s: %s); fetching the other %d "
                           "one by one%s", len(urls), len(out), type(e).__name__, " ".join(str(e).split())[:200],
                           len(urls) - len(out), off)
            return out + [None] * (len(parsed) - len(out))
        except BaseException:
            raw.close()
            raise
        raw.drain_conn()  # the end-of-archive blocks; then the connection can be reused
        raw.release_conn()
        metrics.get_done(started, sum(len(d) for d in out if isinstance(d, bytes)), direct=False)
        return out

    def _split(self, stream: Any, parsed: Sequence[AISUrl], urls: Sequence[str], out: List[Optional[Result]]) -> None:
        """Map the reply's tar entries to the request, in order, appending to ``out`` as they arrive;
        None marks an entry AIS reported missing.

        Raises:
            TarFormatError: an entry out of order, too many entries, or fewer than requested.
        """
        for i, (name, data) in enumerate(self.members(stream, url=f"batch GET of {len(urls)} objects")):
            if i >= len(parsed):
                raise TarFormatError(f"batch reply has more entries than the {len(parsed)} requested")
            u = parsed[i]
            expected = f"{u.bucket}/{u.path}"
            if name == expected:
                out.append(data)
            elif name == MISSING_DIR + expected:
                out.append(None)
            else:
                raise TarFormatError(f"batch reply entry {i} is {name!r}, expected {expected!r}", url=urls[i])
        if len(out) != len(parsed):
            raise _ShortReply(f"batch reply has {len(out)} entries, {len(parsed)} requested")


class _ShortReply(TarFormatError):
    """A batch reply that ended cleanly with fewer entries than requested (a target left or rejoined)."""


def _cluster_changing(exc: BaseException) -> bool:
    """True when a failed batch GET says the cluster is changing (the gateway or a target down,
    restarting or rejoining: a refused connection, an error from AIS, a reply that ended short or
    stalled), not that an established connection broke. Batch replies depend on the gateway and on every
    target streaming its entries to the designated one, so right after a restart they fail, come back
    short or stall (measured: 0-30 of 32 entries, stalls of the whole read timeout) while per-object
    GETs, straight to the targets, already work."""
    import socket

    import requests
    import urllib3.exceptions as u3
    from aistore.sdk.errors import AISError

    if isinstance(exc, (AISError, _ShortReply, u3.ReadTimeoutError, requests.exceptions.ReadTimeout,
                        socket.timeout, ConnectionRefusedError)):
        return True
    reason = getattr(exc.args[0], "reason", None) if exc.args else None  # requests' ConnectionError(MaxRetryError)
    return isinstance(exc, requests.exceptions.ConnectionError) and isinstance(reason, u3.NewConnectionError)


def read_ranges_batched(client: Client, url: str, ranges: Sequence[Tuple[int, int]]) -> List[bytes]:
    """Many ``(start, length)`` byte ranges of one object in one AIS batch GET (ranged entries, AIS >= 5.0).

    Returns the ranges' bytes in request order. Raises whatever the request raises (no per-range
    fallback): callers use it as an optimisation and fall back to plain reads on any error.
    """
    u = parse_url(url)
    batch = client.sdk.batch(bucket=client.bucket(u))
    for start, length in ranges:
        batch.add(u.path, start=start or None, length=length)
    return [data for _, data in batch.get()]
