"""Batched byte-range reads: many ``(url, start, length)`` ranges per AIS GetBatch request, many requests in
flight, bytes back in request order (the objects layer's primitive for random access inside shards).

AIS 5.0's GetBatch (``GET /v1/ml/moss/<bucket>``) takes a byte range per entry (``start``/``length``) and
answers one tar stream with one member per entry, in request order. Two costs shape this module:

* AIS holds every GetBatch reply about 100 ms *after* its last entry: the designated target waits for its
  receive queue to stay quiet for ``noRxWindow`` before the handler returns and the chunked reply ends
  (``basewi.quiesce`` in ``xact/xs/moss.go``). :class:`RangeGetter` therefore stops reading as soon as
  every requested entry has arrived and closes that connection instead of waiting for the end of the
  reply (measured here: 64 ranges of 10 KiB arrive in 10-60 ms, the reply ends at 110-140 ms).
* The remaining fixed cost per request (the gateway's redirect, the job setup on every target) is hidden
  by keeping many requests in flight: :func:`read_ranges` runs a window of them on the
  :class:`~ais_wds.objects.prefetch.Prefetcher` engine.

Where GetBatch is refused (an AIS before 5.0, which does not know ranged entries or GetBatch; a remote
cluster's namespaced bucket, which GetBatch entries cannot name), the ranges are read by concurrent
range GETs (:func:`ais_wds.objects.reader.read_range`, with its resumes and retries) and the refusal is
logged at DEBUG; refused requests turn GetBatch off for :data:`REFUSED_OFF_SECONDS`.

The colocation hint (``coloc=1``: the gateway picks as the designated target the one holding most of the
entries) is sent by default; measured on the local cluster it neither helped nor hurt (see docs/ais5.md).

Thread safety: a :class:`RangeGetter` may be shared by threads. Process safety: picklable (settings only).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .._core.process_local import ProcessLocal
from .._core.retry import translate
from ..client import Client
from ..errors import AISWdsError, ReadError, RequestError
from ..urls import parse_url
from .fetch import Result
from .get_batch import BatchReply
from .prefetch import Prefetcher
from .reader import read_range

logger = logging.getLogger(__name__)

Range = Tuple[str, int, int]
"""``(object url, start offset, length in bytes)``."""

REFUSED_OFF_SECONDS = 300.0
"""Seconds GetBatch stays off (range GETs only) after the cluster refused a ranged GetBatch."""
FAILED_OFF_SECONDS = 10.0
"""Seconds GetBatch stays off after three requests in a row failed otherwise (the cluster changing)."""
MISSING = b"__404__/"
BLOCK = 512


class RangeGetter:
    """Reads lists of byte ranges, one GetBatch request per call (see the module docstring).

    Args:
        client: the cluster.
        colocation: send the colocation hint (``coloc=1``).
        threads: concurrent range GETs per call on the fallback path.

    ``fetch(ranges)`` returns, per range, its bytes or the :class:`~ais_wds.errors.AISWdsError` for it
    (the same contract as the whole-object getters of :mod:`ais_wds.objects.fetch`).
    """

    def __init__(self, client: Union[Client, str, None] = None, *, colocation: bool = True, threads: int = 8):
        self.client = Client.of(client)
        self.colocation = colocation
        self.threads = threads
        self._off_until = 0.0
        self._failures = 0
        self.requests = 0  # GetBatch requests served (this process; diagnostics)
        self.fallbacks = 0  # calls served by range GETs instead
        self._pool: ProcessLocal[ThreadPoolExecutor] = ProcessLocal(self._new_pool)

    def __getstate__(self) -> Dict[str, Any]:
        return {"client": self.client, "colocation": self.colocation, "threads": self.threads}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["client"], colocation=state["colocation"], threads=state["threads"])  # type: ignore[misc]

    def fetch(self, ranges: Sequence[Any]) -> List[Result]:
        """Read every range (item ``i`` of the result belongs to ``ranges[i]``)."""
        ranges = [tuple(r) for r in ranges]
        if not ranges:
            return []
        if time.monotonic() >= self._off_until and len(ranges) > 1:
            parsed = [parse_url(r[0]) for r in ranges]
            if any(u.has_namespace for u in parsed):
                logger.debug("GetBatch cannot name a remote cluster's bucket (%s): %d ranges by range GETs",
                             next(str(u) for u in parsed if u.has_namespace), len(ranges))
            else:
                try:
                    out = self._batch(ranges, parsed)
                    self._failures = 0
                    self.requests += 1
                    return [r if r is not None else self._one(ranges[i]) for i, r in enumerate(out)]
                except Exception as e:  # noqa: BLE001 - classified: refused, or the cluster changing
                    self._refused(e, len(ranges))
        self.fallbacks += 1
        return list(self._pool.get().map(self._one, ranges))

    # -- internals ---------------------------------------------------------------------------------
    def _new_pool(self) -> ThreadPoolExecutor:
        return ThreadPoolExecutor(self.threads, thread_name_prefix="ais-wds-ranges")

    def _one(self, r: Range) -> Result:
        url, start, length = r
        try:
            return bytes(read_range(url, start, start + length, self.client))
        except AISWdsError as e:
            return e

    def _refused(self, e: BaseException, count: int) -> None:
        status = getattr(e, "status", None) or getattr(e, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500 and status not in (401, 403, 408, 429):
            self._off_until = time.monotonic() + REFUSED_OFF_SECONDS
            logger.debug("GetBatch with byte ranges refused (%s: %s); range GETs for %.0fs", type(e).__name__,
                         " ".join(str(e).split())[:200], REFUSED_OFF_SECONDS)
            return
        self._failures += 1
        if self._failures >= 3:
            self._off_until = time.monotonic() + FAILED_OFF_SECONDS
        logger.debug("GetBatch of %d ranges failed (%s: %s); reading them by range GETs", count, type(e).__name__,
                     " ".join(str(e).split())[:200])

    def _batch(self, ranges: Sequence[Range], parsed: Sequence[Any]) -> List[Optional[bytes]]:
        """One GetBatch request; None for an entry AIS reported missing. Raises a typed error on refusal."""
        first = parsed[0]
        entries = [{"objname": u.path, "bucket": u.bucket, "provider": u.provider, "start": start, "length": length}
                   for u, (_, start, length) in zip(parsed, ranges)]
        body = {"in": entries, "mime": ".tar", "coer": True, "onob": True, "strm": True}
        params = {"provider": first.provider}
        if self.colocation:
            body["coloc"] = 1
            params["coloc"] = "1"
        cfg = self.client.config
        http = self.client.http
        where = f"GetBatch of {len(ranges)} ranges of {first.bucket_url}"
        try:
            resp = http.get(f"{self.client.endpoint}/v1/ml/moss/{first.bucket}", params=params, json=body,
                            stream=True, timeout=(cfg.connect_timeout, min(cfg.read_timeout, 5.0)))
        except Exception as e:
            raise translate(e, where, endpoint=self.client.endpoint, token_source=cfg.token_source) from e
        if resp.status_code >= 400:
            from aistore.sdk.response_handler import AISResponseHandler

            try:
                raise translate(AISResponseHandler().parse_error(resp), where, endpoint=self.client.endpoint,
                                token_source=cfg.token_source)
            finally:
                resp.close()
        reply = BatchReply(resp.raw)
        try:
            return _split(reply, ranges, where)
        finally:
            reply.close()  # without waiting for the end of the reply (see the module docstring)
            resp.close()


def _split(reply: BatchReply, ranges: Sequence[Range], where: str) -> List[Optional[bytes]]:
    """The reply's members, one per range, read until the last one has arrived (not to the end)."""
    cap = sum(BLOCK + (length + BLOCK - 1) // BLOCK * BLOCK for _, _, length in ranges) + 2 * BLOCK
    buf = bytearray(cap)
    view = memoryview(buf)
    filled = 0
    pos = 0
    out: List[Optional[bytes]] = []

    def need(n: int) -> None:
        nonlocal filled, buf, view, cap
        while filled < n:
            if n > cap:  # extension headers (long names) made the reply longer than the ranges
                buf += bytes(n - cap + (1 << 16))
                view, cap = memoryview(buf), len(buf)
            k = reply.readinto(view[filled:n])  # no further: the reply's end comes ~100 ms later
            if not k:
                raise ReadError(f"{where}: the reply ended after {len(out)} of {len(ranges)} entries", url=where)
            filled += k

    while len(out) < len(ranges):
        need(pos + BLOCK)
        header = bytes(view[pos:pos + BLOCK])
        size = _size(header, where)
        kind = header[156:157]
        body = pos + BLOCK
        end = body + (size + BLOCK - 1) // BLOCK * BLOCK
        if kind in (b"L", b"K", b"x", b"g"):  # a long name or PAX header: skip to the member it describes
            need(end + BLOCK)
            pos = end
            continue
        if header.startswith(MISSING):
            out.append(None)
            if len(out) < len(ranges):
                need(end)
            pos = end
            continue
        _, _, length = ranges[len(out)]
        if size > length:
            raise RequestError(f"{where}: entry {len(out)} holds {size} bytes, {length} were asked for", url=where)
        if size < length:  # past the end of the object: read alone, it raises the typed error
            out.append(None)
            if len(out) < len(ranges):
                need(end)
            pos = end
            continue
        need(body + size)
        out.append(bytes(view[body:body + size]))
        pos = end
    return out


def _size(header: bytes, where: str) -> int:
    field = header[124:136]
    if field[0] & 0x80:  # base-256
        return int.from_bytes(field[1:], "big")
    try:
        return int(field.rstrip(b"\0 ").strip() or b"0", 8)
    except ValueError:
        raise RequestError(f"{where}: the reply is not a tar stream (bad size field {bytes(field)!r})",
                           url=where) from None


def read_ranges(client: Union[Client, str, None], ranges: Iterable[Range], *, per_request: int = 128,
                window: int = 16, max_bytes: int = 256 << 20, colocation: bool = True) -> Iterator[bytes]:
    """Read byte ranges of objects, in order: ``per_request`` ranges per GetBatch request, up to
    ``window`` requests (and ``max_bytes``) in flight.

    Args:
        client: the cluster (a :class:`Client`, an endpoint, or None for the environment's).
        ranges: ``(url, start, length)`` triples, any objects of the cluster's buckets, in any order (the
            same object many times is fine), each within its object; consumed lazily.
        per_request: ranges per GetBatch request (AIS's fixed cost per request is spread over them).
        window: requests in flight at once (each on its own thread).
        max_bytes: most requested bytes in flight.
        colocation: send AIS's colocation hint.

    Yields:
        Each range's bytes (``length`` of them), in the order of ``ranges``.

    Raises:
        ObjectNotFoundError, ReadError, RequestError, ...: the typed error of the first range that cannot be
        read (from its range GET: entries GetBatch misses are read again one by one; a range past the end of
        its object is a ReadError). Closing the generator
        cancels the requests not started.

    Example::

        for data in read_ranges(client, [("ais://b/shard-0.tar", 1536, 10752), ...], window=16):
            ...
    """
    engine = Prefetcher(RangeGetter(Client.of(client), colocation=colocation), threads=window,
                        batch_size=per_request, depth=window, max_bytes=max_bytes, batch_bytes=max_bytes)
    items: Iterable[Any] = ((tuple(r), r[2]) for r in ranges)
    try:
        for _, result in engine.imap(items):
            if isinstance(result, AISWdsError):
                raise result
            yield result
    finally:
        engine.close()
