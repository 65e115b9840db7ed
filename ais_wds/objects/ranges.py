"""Batched byte-range reads: many ``(url, start, length)`` ranges per call, many calls in flight, bytes back in
request order (the objects layer's primitive for random access inside shards).

Three transports, tried in this order by :class:`RangeGetter` (``transport="auto"``):

1. **Pipelined range GETs straight to the owning targets** (:mod:`ais_wds.objects.pipelined`): the
   fastest here at every sample size measured (1, 10 and 100 KiB; figures in that module and in
   docs/shuffle.md): a target answers a plain range GET with ``sendfile`` and the client parses one
   response head per range.
2. **GetBatch with a byte range per entry** (AIS 5.0's ``GET /v1/ml/moss/<bucket>`` with ``start``/``length``
   per entry; one tar stream back, one member per entry, in request order), through the gateway: used
   when the targets cannot be reached directly (no cluster map, a target refusing connections, e.g.
   behind a Kubernetes service).
3. **Concurrent range GETs through the reader core** (:func:`ais_wds.objects.reader.read_range`, with
   its resumes, retries and typed errors): for what the others could not read (a missing object: the
   typed error comes from here), where GetBatch is refused (an AIS before 5.0; a remote cluster's
   namespaced bucket, which neither batched path can name), logged at DEBUG; refused GetBatch requests
   turn GetBatch off for :data:`REFUSED_OFF_SECONDS`.

``transport="getbatch"`` skips (1) and ``transport="range"`` uses (3) only.

Two costs shape the GetBatch path: AIS holds every GetBatch reply about 100 ms *after* its last entry
(the designated target waits for its receive queue to stay quiet for ``noRxWindow``, ``basewi.quiesce``
in ``xact/xs/moss.go``), so :class:`RangeGetter` stops reading as soon as every requested entry has
arrived and closes that connection (64 ranges of 10 KiB arrive in 10-60 ms, the reply ends at 110-140
ms); and the fixed cost per request (the gateway's redirect, the job setup on every target) is hidden
by keeping many requests in flight (:func:`read_ranges` runs a window of calls on the
:class:`~ais_wds.objects.prefetch.Prefetcher` engine). The colocation hint (``coloc=1``: the gateway
picks as the designated target the one holding most of the entries) is sent by default; measured on
the local cluster it neither helped nor hurt (see docs/ais5.md).

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
from ..errors import AISWdsError, ConfigError, ReadError, RequestError
from ..urls import parse_url
from .fetch import Result
from .get_batch import BatchReply
from .pipelined import RangePipeline
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
TRANSPORTS = ("auto", "getbatch", "range")
"""``RangeGetter(transport=...)``: see the module docstring."""
PER_REQUEST = {"auto": 64, "getbatch": 256, "range": 64}
"""Most ranges per call, by transport."""
CALL_BYTES = {"auto": 1 << 20, "getbatch": 256 << 20, "range": 1 << 20}
"""Most requested bytes per call, by transport: pipelined calls stay small so that many are in flight."""
WINDOW = {"auto": 32, "getbatch": 8, "range": 8}
"""Calls in flight, by transport. Measured (global shuffle, DataLoader with 2 workers, 100 shards, load
average 13-18; ratio to the sequential stream): 10 KiB 64 x 8 0.40x, 64 x 16 0.43x, 32 x 32 0.41x (GetBatch
256 x 8: 0.31x); 100 KiB 64 x 8 0.43x, 128 x 16 0.58x, 32 x 32 0.62x (GetBatch 256 x 8: 0.59x). At 100 KiB
what counts is the number of requests in flight, at 10 KiB the cluster's CPU per request."""


class RangeGetter:
    """Reads lists of byte ranges, one batched call at a time (see the module docstring).

    Args:
        client: the cluster.
        colocation: send GetBatch's colocation hint (``coloc=1``).
        threads: concurrent range GETs per call on the fallback path.
        transport: ``"auto"`` (pipelined range GETs to the targets, then GetBatch, then range GETs),
            ``"getbatch"`` (GetBatch, then range GETs) or ``"range"`` (range GETs through the reader core).

    ``fetch(ranges)`` returns, per range, its bytes or the :class:`~ais_wds.errors.AISWdsError` for it
    (the same contract as the whole-object getters of :mod:`ais_wds.objects.fetch`).
    """

    def __init__(self, client: Union[Client, str, None] = None, *, colocation: bool = True, threads: int = 8,
                 transport: str = "auto"):
        if transport not in TRANSPORTS:
            raise ConfigError(f"RangeGetter transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
        self.client = Client.of(client)
        self.colocation = colocation
        self.threads = threads
        self.transport = transport
        self._off_until = 0.0
        self._failures = 0
        self.pipelined = 0  # calls served whole by pipelined range GETs (this process; diagnostics)
        self.requests = 0  # GetBatch requests served
        self.fallbacks = 0  # calls that read some ranges by range GETs through the reader core
        self._pipeline = RangePipeline(self.client)
        self._pool: ProcessLocal[ThreadPoolExecutor] = ProcessLocal(self._new_pool)

    def __getstate__(self) -> Dict[str, Any]:
        return {"client": self.client, "colocation": self.colocation, "threads": self.threads,
                "transport": self.transport}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.__init__(state["client"], colocation=state["colocation"], threads=state["threads"],  # type: ignore[misc]
                      transport=state.get("transport", "auto"))

    @property
    def per_request(self) -> int:
        """Ranges per call that suit this getter's first transport."""
        return PER_REQUEST[self.transport]

    def fetch(self, ranges: Sequence[Any]) -> List[Result]:
        """Read every range (item ``i`` of the result belongs to ``ranges[i]``): its bytes, or the
        :class:`~ais_wds.errors.AISWdsError` for it."""
        ranges = [tuple(r) for r in ranges]
        if not ranges:
            return []
        out: List[Any] = [None] * len(ranges)
        todo = list(range(len(ranges)))
        batch = self.transport != "range"
        if self.transport == "auto":
            got, unavailable = self._pipeline.fetch(ranges)
            todo = [i for i, r in enumerate(got) if r is None]
            out = list(got)
            if not todo:
                self.pipelined += 1
                return out
            if unavailable:
                logger.debug("%d of %d ranges not readable straight from the targets: GetBatch", len(todo), len(ranges))
            else:
                batch = False  # answered but not served (a missing object...): the reader core says why
        if batch and len(todo) > 1 and time.monotonic() >= self._off_until:
            sub = [ranges[i] for i in todo]
            parsed = [parse_url(r[0]) for r in sub]
            if any(u.has_namespace for u in parsed):
                logger.debug("GetBatch cannot name a remote cluster's bucket (%s): %d ranges by range GETs",
                             next(str(u) for u in parsed if u.has_namespace), len(sub))
            else:
                try:
                    res = self._batch(sub, parsed)
                    self._failures = 0
                    self.requests += 1
                    for i, r in zip(todo, res):
                        out[i] = r
                    todo = [i for i in todo if out[i] is None]
                except Exception as e:  # noqa: BLE001 - classified: refused, or the cluster changing
                    self._refused(e, len(sub))
        if todo:
            self.fallbacks += 1
            for i, one in zip(todo, self._pool.get().map(self._one, [ranges[i] for i in todo])):
                out[i] = one
        return out

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
            if n > cap:  # extension headers (long or non-ASCII names) made the reply longer than the ranges
                grown = bytearray(n + (1 << 16))  # a new buffer: the exported one cannot be resized
                grown[:filled] = view[:filled]
                view.release()
                buf = grown
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


def read_ranges(client: Union[Client, str, None], ranges: Iterable[Range], *, per_request: Optional[int] = None,
                window: Optional[int] = None, max_bytes: int = 256 << 20, colocation: bool = True,
                transport: str = "auto", call_bytes: Optional[int] = None) -> Iterator[bytes]:
    """Read byte ranges of objects, in order: up to ``per_request`` ranges (and ``call_bytes``) per call
    (pipelined range GETs to the targets, or a GetBatch request; see the module docstring), up to
    ``window`` calls (and ``max_bytes``) in flight.

    Args:
        client: the cluster (a :class:`Client`, an endpoint, or None for the environment's).
        ranges: ``(url, start, length)`` triples, any objects of the cluster's buckets, in any order (the
            same object many times is fine), each within its object; consumed lazily.
        per_request: ranges per call (default: :data:`PER_REQUEST` of the transport).
        window: calls in flight at once, each on its own thread (default: :data:`WINDOW` of the transport).
        max_bytes: most requested bytes in flight.
        colocation: send GetBatch's colocation hint.
        transport: ``"auto"``, ``"getbatch"`` or ``"range"`` (see :class:`RangeGetter`).
        call_bytes: most requested bytes per call (default: :data:`CALL_BYTES` of the transport).

    Yields:
        Each range's bytes (``length`` of them), in the order of ``ranges``.

    Raises:
        ObjectNotFoundError, ReadError, RequestError, ...: the typed error of the first range that cannot be
        read (from its range GET: ranges the batched paths miss are read again one by one; a range past the
        end of its object is a ReadError). Closing the generator cancels the requests not started.

    Example::

        for data in read_ranges(client, [("ais://b/shard-0.tar", 1536, 10752), ...], window=16):
            ...
    """
    getter = RangeGetter(Client.of(client), colocation=colocation, transport=transport)
    window = window or WINDOW[transport]
    engine = Prefetcher(getter, threads=window, batch_size=per_request or getter.per_request, depth=window,
                        max_bytes=max_bytes, batch_bytes=min(call_bytes or CALL_BYTES[transport], max_bytes))
    items: Iterable[Any] = ((tuple(r), r[2]) for r in ranges)
    try:
        for _, result in engine.imap(items):
            if isinstance(result, AISWdsError):
                raise result
            yield result
    finally:
        engine.close()
