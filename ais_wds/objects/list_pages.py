"""AIS's list-objects pages read straight off the wire: msgpack, no per-entry models (objects layer).

:func:`list_pages` sends AIS's list action (``GET /v1/buckets/<bucket>`` with ``Accept:
application/msgpack``), follows the continuation token to the last page and yields each page's entries
as AIS sent them: a list of small dicts with AIS's short keys as *bytes* (``b"n"`` name, ``b"s"`` size,
``b"cs"`` checksum, ``b"v"`` version, ``b"f"`` flags; names are UTF-8 bytes). It is what the aistore
SDK's ``list_objects`` does minus the model it builds for every entry, which was most of the cost of a
listing (the SDK's ``list_objects_iter`` lists about half as fast as a bare loop over the same pages).

Requests go through the client's connections with the client's timeouts and token: its urllib3 pool
(``Connections.pool``, the one direct GETs use: its CA bundle, no per-request work beyond the request
itself) when requests would send them straight to the gateway too, else its ``requests`` session
(``Client.http``: an ``https://`` endpoint verified with the default CA bundle, or a proxy from the
environment that applies to the endpoint). The session costs about 0.5 ms of CPU per page (it re-reads the
proxy settings of the environment and merges its settings for every request), a tenth of a 1,000-object
listing. A page that fails transiently (a dropped connection, 429/5xx, a gateway that restarts, a gateway
that could not reach a target: 400 ``failed to call t[...]``) is asked for again within ``retry_seconds``;
every other failure is a typed error from :func:`ais_wds._core.retry.translate` (``BucketNotFoundError``,
``AuthError``, ``ConnectError``, ``RequestError``).

Thread safety: each call is independent; a client may list from many threads.
"""

from __future__ import annotations

import json
import logging
import os
import time
from types import SimpleNamespace
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlencode

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
    endpoint = client.endpoint
    where = str(url)
    params: Dict[str, str] = {"provider": url.provider}
    if url.has_namespace:
        params["namespace"] = f"@{url.ns_uuid}#{url.ns_name}"
    target = f"{endpoint}/v1/buckets/{url.bucket}?{urlencode(params)}"
    value = {"prefix": url.path, "props": props, "flags": str(flags), "pagesize": page_size, "uuid": "",
             "continuation_token": ""}
    answered = False
    while True:
        page = _fetch_page(client, target, {"action": "list", "value": value}, where, answered)
        answered = True
        yield page["entries"]
        token, uuid = page["token"], page["uuid"]
        if not token:
            return
        value = {**value, "uuid": uuid, "continuation_token": token}


def _fetch_page(client: Client, target: str, body: Dict[str, Any], where: str, answered: bool) -> Dict[str, Any]:
    backoff: Optional[Backoff] = None
    while True:
        try:
            status, content_type, data = _get(client, target, json.dumps(body).encode())
            if status >= 400:
                from aistore.sdk.response_handler import AISResponseHandler

                text = data.decode("utf-8", "replace")
                request = SimpleNamespace(url=target, method="GET")
                raise AISResponseHandler().parse_error(SimpleNamespace(status_code=status, text=text, request=request))
            return _decode(data, content_type, where)
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


_ACCEPT = {"Accept": "application/msgpack", "Content-Type": "application/json"}


def _get(client: Client, target: str, body: bytes) -> Tuple[int, str, bytes]:
    """One list request: ``(status, content type, body)`` of the answer, through the urllib3 pool where
    :func:`_pool_serves` says it may, else through the requests session (which follows a redirect).

    Raises: requests' exceptions (the pool's urllib3 errors are raised as the ones requests would raise,
    so that the retry and the error translation see one kind)."""
    conn = client.connections()
    if _pool_serves(client):
        import urllib3.exceptions as u3

        try:
            resp = conn.pool.request("GET", target, body=body, headers={**_ACCEPT, **conn.headers},
                                     timeout=conn.timeout, redirect=False, retries=False, preload_content=True)
        except u3.HTTPError as e:
            raise _as_requests_error(e, target) from e
        if not 300 <= resp.status < 400:
            return resp.status, resp.headers.get("Content-Type", ""), resp.data
    resp = conn.http.get(target, data=body, headers=_ACCEPT, timeout=(client.config.connect_timeout,
                                                                      client.config.read_timeout))
    try:
        return resp.status_code, resp.headers.get("Content-Type", ""), resp.content
    finally:
        resp.close()


_PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy",
               "no_proxy")
_POOL_SERVES: Dict[Tuple[Any, ...], bool] = {}


def _pool_serves(client: Client) -> bool:
    """True when the urllib3 pool sends a list request exactly as the requests session would: an
    ``http://`` endpoint, or ``https://`` verified with the client's own CA bundle (or not at all), and no
    proxy of the environment for the endpoint (checked once per endpoint and proxy settings)."""
    cfg = client.config
    key = (cfg.endpoint, cfg.ca_cert, cfg.skip_verify, *(os.environ.get(v) for v in _PROXY_VARS))
    serves = _POOL_SERVES.get(key)
    if serves is None:
        import requests.utils

        tls_as_session = not cfg.endpoint.startswith("https://") or bool(cfg.ca_cert) or cfg.skip_verify
        proxy = requests.utils.select_proxy(cfg.endpoint, requests.utils.get_environ_proxies(cfg.endpoint))
        serves = _POOL_SERVES[key] = tls_as_session and proxy is None
    return serves


def _as_requests_error(exc: Exception, target: str) -> Exception:
    """The exception requests raises for urllib3's ``exc`` (what its adapter maps it to)."""
    import requests.exceptions as rq
    import urllib3.exceptions as u3

    request = SimpleNamespace(url=target, method="GET")
    if isinstance(exc, u3.SSLError):
        return rq.SSLError(exc, request=request)
    if isinstance(exc, u3.ConnectTimeoutError):
        return rq.ConnectTimeout(exc, request=request)
    if isinstance(exc, u3.ReadTimeoutError):
        return rq.ReadTimeout(exc, request=request)
    return rq.ConnectionError(exc, request=request)


def _target_unreachable(exc: BaseException) -> bool:
    """The gateway answered 400 because a target it asked for the page did not answer (``failed to call
    t[...]``: a target restarting): the page is asked for again, like a 5xx."""
    from aistore.sdk.errors import AISError

    if not isinstance(exc, AISError) or exc.status_code != 400:
        return False
    text = str(getattr(exc, "message", "") or exc)
    return "failed to call t[" in text and any(w in text for w in ("connection refused", "connection reset", "EOF",
                                                                     "timeout", "no route"))


def _from_json(entry: Dict[str, Any]) -> Entry:
    """A JSON list entry as the msgpack one: short keys, strings as UTF-8 bytes, the size an int (AIS's JSON
    sends it as a string: ``json:"size,string"`` in ``cmn/objlist.go``)."""
    out: Entry = {}
    for key, value in entry.items():
        short = _JSON_KEYS.get(key, key.encode())
        if short == b"s":
            value = int(value)
        elif isinstance(value, str):
            value = value.encode()
        out[short] = value
    return out


def _decode(data: bytes, content_type: str, where: str) -> Dict[str, Any]:
    """One page: ``{"uuid", "token", "entries"}`` from AIS's msgpack reply (or its JSON one)."""
    try:
        if "json" in content_type:  # an AIS that ignored Accept: its JSON entries in the msgpack form
            doc = json.loads(data)
            entries = [_from_json(e) for e in doc.get("entries") or []]
            return {"uuid": doc.get("uuid", ""), "token": doc.get("continuation_token", ""), "entries": entries}
        doc = msgpack.unpackb(data, raw=True)
        token = doc.get(b"ContinuationToken") or b""
        uuid = doc.get(b"UUID") or b""
        return {"uuid": uuid.decode(), "token": token.decode(), "entries": doc.get(b"Entries") or []}
    except (ValueError, TypeError, AttributeError, msgpack.UnpackException) as e:
        raise RequestError(f"AIS answered a list page that does not decode ({type(e).__name__}: {e}; "
                           f"{len(data)} bytes of {content_type or 'no content type'})", url=where) from None
