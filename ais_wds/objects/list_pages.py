"""AIS's list-objects pages read straight off the wire: msgpack, no per-entry models (objects layer).

:func:`list_pages` sends AIS's list action (``GET /v1/buckets/<bucket>`` with ``Accept:
application/msgpack``), follows the continuation token to the last page and yields each page's entries
as AIS sent them: a list of small dicts with AIS's short keys as *bytes* (``b"n"`` name, ``b"s"`` size,
``b"cs"`` checksum, ``b"v"`` version, ``b"f"`` flags; names are UTF-8 bytes). It is what the aistore
SDK's ``list_objects`` does minus the model it builds for every entry, which was most of the cost of a
listing (the SDK's ``list_objects_iter`` lists about half as fast as a bare loop over the same pages).

Requests go through the client's one HTTP session (``Client.http``: its CA bundle pinned whatever
``REQUESTS_CA_BUNDLE`` says, its token header, its pool) with the client's timeouts; a page that fails
transiently (a dropped connection, 429/5xx, a gateway that restarts) is asked for again within
``retry_seconds``; every other failure is a typed error from :func:`ais_wds._core.retry.translate`
(``BucketNotFoundError``, ``AuthError``, ``ConnectError``, ``RequestError``).

Thread safety: each call is independent; a client may list from many threads.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Dict, Iterator, List, Optional

import msgpack

from .._core.retry import Backoff, is_gateway_unreachable, is_transient, translate
from ..client import Client
from ..errors import AISWdsError, RequestError
from ..urls import AISUrl

logger = logging.getLogger(__name__)

LS_ARCH_DIR = 1 << 3
"""List-action flag (``apc.LsArchDir``): also list the members of shards as ``shard.tar/member``."""
LS_NO_DIRS = 1 << 13
"""List-action flag (``apc.LsNoDirs``): no virtual-directory entries."""
ENTRY_IS_DIR = 1 << 8
"""Entry flag (``apc.EntryIsDir``): a virtual directory, not an object."""

Entry = Dict[bytes, Any]
"""One list entry as AIS sends it: ``{b"n": name, b"s": size, b"f": flags, ...}`` (keys per ``props``)."""

_JSON_KEYS = {"name": b"n", "size": b"s", "checksum": b"cs", "version": b"v", "atime": b"a", "flags": b"f",
              "location": b"t", "copies": b"c", "custom-md": b"m"}


def list_pages(client: Client, url: AISUrl, *, props: str = "name,size", flags: int = 0,
               page_size: int = 0) -> Iterator[List[Entry]]:
    """Yield the entries of every page of the listing of ``url``'s bucket under prefix ``url.path``.

    Args:
        client: the cluster.
        url: the bucket (any provider; ``ais://@uuid#ns/bucket`` for a remote AIS cluster's) and prefix.
        props: the properties AIS returns per entry (``"name,size"``; ``"name,size,checksum,version"``).
        flags: list-action flags (:data:`LS_ARCH_DIR`, ...).
        page_size: entries per page (0: the backend's maximum: 10,000 for ais://, 1,000 for s3:// and gs://).

    Yields:
        Each page's entries in AIS's order (sorted by name), as AIS sent them (see :data:`Entry`);
        virtual directories included (their ``b"f"`` has :data:`ENTRY_IS_DIR`).

    Raises:
        BucketNotFoundError, AuthError, ConnectError, RequestError: a page could not be listed.
    """
    http = client.http
    endpoint = client.endpoint
    where = str(url)
    params: Dict[str, str] = {"provider": url.provider}
    if url.has_namespace:
        params["namespace"] = f"@{url.ns_uuid}#{url.ns_name}"
    target = f"{endpoint}/v1/buckets/{url.bucket}"
    headers = {"Accept": "application/msgpack"}
    timeout = (client.config.connect_timeout, client.config.read_timeout)
    value = {"prefix": url.path, "props": props, "flags": str(flags), "pagesize": page_size, "uuid": "",
             "continuation_token": ""}
    answered = False
    while True:
        body = {"action": "list", "value": value}
        page = _fetch_page(client, http, target, params, body, headers, timeout, where, answered)
        answered = True
        yield page["entries"]
        token, uuid = page["token"], page["uuid"]
        if not token:
            return
        value = {**value, "uuid": uuid, "continuation_token": token}


def _fetch_page(client: Client, http: Any, target: str, params: Dict[str, str], body: Dict[str, Any],
                headers: Dict[str, str], timeout: Any, where: str, answered: bool) -> Dict[str, Any]:
    backoff: Optional[Backoff] = None
    while True:
        try:
            resp = http.get(target, params=params, json=body, headers=headers, timeout=timeout)
            try:
                if resp.status_code >= 400:
                    from aistore.sdk.response_handler import AISResponseHandler

                    raise AISResponseHandler().parse_error(resp)
                return _decode(resp.content, resp.headers.get("Content-Type", ""), where)
            finally:
                resp.close()
        except AISWdsError:
            raise
        except Exception as e:  # noqa: BLE001 - classified below
            never_reached = not answered and not client.answered and is_gateway_unreachable(e, client.endpoint)
            if backoff is None:
                backoff = Backoff(client.config.retry_seconds)
            delay = backoff.next_delay() if (is_transient(e) or _target_unreachable(e)) and not never_reached else None
            if delay is None:
                raise translate(e, where, endpoint=client.endpoint, token_source=client.config.token_source) from e
            logger.debug("listing %s: %s; page asked again in %.1fs", where, type(e).__name__, delay)
            time.sleep(delay)


def _target_unreachable(exc: BaseException) -> bool:
    """The gateway answered 400 because a target it asked for the page did not answer (``failed to call
    t[...]``: a target restarting): the page is asked for again, like a 5xx."""
    from aistore.sdk.errors import AISError

    if not isinstance(exc, AISError) or exc.status_code != 400:
        return False
    text = str(getattr(exc, "message", "") or exc)
    return "failed to call t[" in text and any(w in text for w in ("connection refused", "connection reset", "EOF",
                                                                     "timeout", "no route"))


def _decode(data: bytes, content_type: str, where: str) -> Dict[str, Any]:
    """One page: ``{"uuid", "token", "entries"}`` from AIS's msgpack reply (or its JSON one)."""
    try:
        if "json" in content_type:  # an AIS that ignored Accept: the long JSON keys, mapped to the short ones
            import json

            doc = json.loads(data)
            entries = [{_JSON_KEYS.get(k, k.encode()): v for k, v in e.items()} for e in doc.get("entries") or []]
            for e in entries:
                if isinstance(e.get(b"n"), str):
                    e[b"n"] = e[b"n"].encode()
            return {"uuid": doc.get("uuid", ""), "token": doc.get("continuation_token", ""), "entries": entries}
        doc = msgpack.unpackb(data, raw=True)
        token = doc.get(b"ContinuationToken") or b""
        uuid = doc.get(b"UUID") or b""
        return {"uuid": uuid.decode(), "token": token.decode(), "entries": doc.get(b"Entries") or []}
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as e:
        raise RequestError(f"AIS answered a list page that does not decode ({type(e).__name__}: {e}; "
                           f"{len(data)} bytes of {content_type or 'no content type'})", url=where) from None
