"""One process's connections to one AIS cluster, owned by a :class:`~ais_wds.client.Client`.

Everything that talks HTTP in ais_wds goes through here: the aistore SDK client (listing, range and
archive reads, batch GET, multipart upload), a ``requests`` session (the few requests the SDK cannot
shape), a urllib3 pool (direct-to-target GETs of small objects) and the cluster map that says which
target owns an object. All share the client's endpoint, TLS, token, pool size and timeouts; they are
built once per process (the client keeps them in a :class:`~ais_wds._core.process_local.ProcessLocal`)
and never pickled.

Thread safety: every member may be used from many threads.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Dict, Optional, Tuple
from urllib.parse import quote, urlencode

from ..config import ClientConfig
from ..urls import AISUrl
from .heap import bound_worker_heap, freeze_inherited

logger = logging.getLogger(__name__)

DIRECT_POOL_MIN = 64
"""Idle connections kept per target for direct GETs, at least (fetch threads of a dataset or pack)."""

CLUSTER_MAP_TTL = 60.0
"""Seconds a cluster map is trusted before it is fetched again."""

_ENV_THAT_REQUESTS_READS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                            "all_proxy", "no_proxy", "NETRC", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")


class Connections:
    """The SDK client, HTTP session, direct-GET pool and cluster map of one process for one config."""

    def __init__(self, config: ClientConfig):
        logger.debug("connecting to AIS at %s in pid %d (token: %s)", config.endpoint, os.getpid(),
                     config.token_source)
        self.config = config
        freeze_inherited()  # in a DataLoader worker: its full collections leave the parent's pages alone
        bound_worker_heap()  # AIS_WDS_HEAP=workers: a worker's connections are built once, in the worker
        self._sdk: Any = None
        self.http = _requests_session(config)
        self.pool, self.timeout = _urllib3_pool(config)
        self.headers: Dict[str, str] = {"Authorization": f"Bearer {config.token}"} if config.token else {}
        # a process forked from one that had a map starts with it (due for a refresh, but used while the
        # gateway does not answer): DataLoader workers started during a gateway restart can read at once
        self._smap: Any = _LAST_MAPS.get(config.endpoint)
        self._smap_time = float("-inf")
        self._smap_retry_after = 0.0
        self._smap_lock = threading.Lock()
        self._direct_off_until = 0.0
        self._refused_but_served = 0
        self._denied_until = 0.0  # targets deny direct requests (AuthN): see direct_allowed()
        self._forbidden = threading.local()  # this thread's last direct GET got a plain 403
        self._qparams: Dict[Tuple[str, str, str, str], str] = {}
        self._lock = threading.Lock()
        self._batch_sdk: Any = None
        self.verified = False
        self._verify_lock = threading.Lock()
        self._probe_after = 0.0

    @property
    def sdk(self) -> Any:
        """The aistore SDK client, built on first use: a process that only lists (``list_objects`` reads AIS's
        pages itself) never imports the SDK (~0.4 s of its first listing here)."""
        if self._sdk is None:
            with self._lock:
                if self._sdk is None:
                    self._sdk = _sdk_client(self.config)
        return self._sdk

    @property
    def batch_sdk(self) -> Any:
        """An SDK client for batch GETs: the same settings, but a read timeout of at most
        :data:`BATCH_READ_TIMEOUT` s, so a batch reply that stalls (a target restarting under it) is given
        up in seconds and its missing entries fetched one by one, instead of waiting ``read_timeout``; and
        no connection retries (a refused batch is fetched one by one at once, not after 1.4 s of retries)."""
        if self._batch_sdk is None:
            with self._lock:
                if self._batch_sdk is None:
                    self._batch_sdk = _sdk_client(self.config, min(self.config.read_timeout, BATCH_READ_TIMEOUT),
                                                  attempts=1)
        return self._batch_sdk

    def verify_endpoint(self) -> None:
        """Ask the endpoint once whether it is AIS (``GET /v1/health``); see :meth:`Client.connections`.

        AIS answers with ``Ais-*`` headers (or, while starting, its JSON error shape naming the node).
        An answer without either is another server: :class:`ConnectError` naming the endpoint and what
        answered. A refused or timed-out connect, and a 5xx without AIS's shape (a load balancer in front
        of a restarting gateway), are inconclusive: the real request reports them; the probe is repeated
        at most every :data:`PROBE_INTERVAL` seconds. A connection accepted but not answered within
        :data:`PROBE_READ_TIMEOUT` s is a :class:`ConnectError` (no read waits its full timeout on it).
        """
        if self.verified or time.monotonic() < self._probe_after:
            return
        with self._verify_lock:
            if self.verified or time.monotonic() < self._probe_after:
                return
            self._probe()

    def _probe(self) -> None:
        import requests

        endpoint = self.config.endpoint
        timeout = (self.config.connect_timeout, min(self.config.read_timeout, PROBE_READ_TIMEOUT))
        try:
            resp = self.http.get(f"{endpoint}/v1/health", timeout=timeout, allow_redirects=False, stream=True)
            head = resp.raw.read(PROBE_BODY_LIMIT, decode_content=True) if resp.raw is not None else b""
        except requests.exceptions.ReadTimeout:
            from .sdk_errors import ConnectError  # (it imports the aistore SDK: only on the way out)

            raise ConnectError(f"{endpoint} accepted a connection but did not answer GET /v1/health within "
                               f"{timeout[1]:g} s", url=endpoint,
                               hint="is this an AIS gateway's address and port? check AIS_ENDPOINT") from None
        except requests.exceptions.RequestException as e:
            logger.debug("endpoint probe of %s inconclusive: %s", endpoint, type(e).__name__)
            self._probe_after = time.monotonic() + PROBE_INTERVAL
            return
        try:
            if _answers_like_ais(resp, head):
                self.verified = True
                return
            if resp.status_code >= 500:
                self._probe_after = time.monotonic() + PROBE_INTERVAL
                return
            what = _describe(resp, head)
        finally:
            resp.close()
        from .sdk_errors import ConnectError

        raise ConnectError(f"{endpoint} is not an AIS gateway: GET /v1/health answered {what}", url=endpoint,
                           hint="point AIS_ENDPOINT (or endpoint=) at an AIS proxy, e.g. http://host:8080")

    def direct_url(self, u: AISUrl, bucket: Any) -> Optional[str]:
        """The GET URL of object ``u`` on the target that owns it (from the cluster map), or None when
        there is no cluster map (see :meth:`cluster_map`) or no target for it.

        Args:
            u: the object's URL.
            bucket: its SDK ``Bucket`` (for the provider/namespace query parameters).
        """
        smap = self.cluster_map()
        if smap is None:
            return None
        key = (u.provider, u.ns_uuid, u.ns_name, u.bucket)
        qs = self._qparams.get(key)
        if qs is None:
            qs = self._qparams[key] = urlencode(bucket.qparam)
        try:
            node = smap.get_target_for_object(uname(u))
        except Exception:  # noqa: BLE001 - NoTargetError: every target in maintenance
            return None
        if node is None or node.public_net is None:
            return None
        return f"{node.public_net.direct_url}/v1/objects/{quote(u.bucket)}/{quote(u.path)}?{qs}"

    def cluster_map(self) -> Any:
        """The cluster map (the SDK's ``Smap``), fetched from the gateway at most every
        :data:`CLUSTER_MAP_TTL` s; None when it was never fetched and cannot be now.

        A map that is due but cannot be fetched (the gateway is down or restarting) is kept and used,
        and asked for again every :data:`CLUSTER_MAP_RETRY` s: reads keep going straight to the targets
        while the gateway is away. Only the first fetch waits for another thread's; a refresh never
        blocks a caller that has a map. The fetch is one GET with the client's connect timeout and a
        read timeout of at most :data:`PROBE_READ_TIMEOUT` s, without the SDK's retries.
        """
        now = time.monotonic()
        smap = self._smap
        if smap is not None and now - self._smap_time <= CLUSTER_MAP_TTL:
            return smap
        if now < self._smap_retry_after or not self._smap_lock.acquire(blocking=smap is None):
            return smap
        try:
            if self._smap is not None and time.monotonic() - self._smap_time <= CLUSTER_MAP_TTL:
                return self._smap
            if time.monotonic() < self._smap_retry_after:
                return self._smap
            try:
                self._smap = _LAST_MAPS[self.config.endpoint] = self._fetch_cluster_map()
                self._smap_time = time.monotonic()
            except Exception as e:  # noqa: BLE001 - without a (new) map reads go through the gateway
                self._smap_retry_after = time.monotonic() + CLUSTER_MAP_RETRY
                logger.debug("cluster map from %s not fetched (%s: %s); %s", self.config.endpoint,
                             type(e).__name__, e, "keeping the old one" if self._smap is not None
                             else "reads go through the gateway")
            return self._smap
        finally:
            self._smap_lock.release()

    def _fetch_cluster_map(self) -> Any:
        from aistore.sdk.types import Smap
        from aistore.sdk.utils import decode_response

        timeout = (self.config.connect_timeout, min(self.config.read_timeout, PROBE_READ_TIMEOUT))
        resp = self.http.get(f"{self.config.endpoint}/v1/daemon", params={"what": "smap"}, timeout=timeout,
                             allow_redirects=False)
        try:
            resp.raise_for_status()
            smap = decode_response(Smap, resp)
        finally:
            resp.close()
        if not smap.tmap:  # a gateway that restarted and has not heard from its targets yet
            raise ValueError(f"the cluster map v{smap.version} lists no targets")
        return smap

    def refresh_cluster_map_soon(self, within: float = 5.0) -> None:
        """A target answered as if it did not own an object: fetch the map again within ``within`` s."""
        self._smap_time = min(self._smap_time, time.monotonic() - CLUSTER_MAP_TTL + within)

    def direct_allowed(self) -> bool:
        """False while targets are known to deny direct requests (see :meth:`deny_direct`): every path
        that sends requests straight to targets (the reader core, ``DirectGetter``, pipelined range GETs)
        asks the gateway at once instead, without a request to a target or a cluster-map refresh."""
        return time.monotonic() >= self._denied_until

    def deny_direct(self, why: str) -> None:
        """Targets deny direct requests (a cluster with AuthN answers 403 "direct target access denied"
        to requests that did not come through the gateway): direct requests stay off, for this client in
        this process, for :data:`DIRECT_DENIED_OFF_SECONDS`; then one is tried again. One INFO line when
        the direct path turns off (``why`` names what was seen; never a token)."""
        with self._lock:  # threads denied at once: one log line
            now = time.monotonic()
            if now >= self._denied_until:
                logger.info("targets of %s deny direct requests (%s); reading through the gateway for %.0fs",
                            self.config.endpoint, why, DIRECT_DENIED_OFF_SECONDS)
            self._denied_until = now + DIRECT_DENIED_OFF_SECONDS

    def open_direct(self, u: AISUrl, bucket: Any, headers: Optional[Dict[str, str]] = None,
                    preload: bool = False) -> Tuple[Any, bool]:
        """GET object ``u`` straight from the target that owns it (cluster map), skipping the gateway.

        Args:
            u: the object's URL.
            bucket: its SDK ``Bucket``.
            headers: extra request headers (``Range``).
            preload: read the whole body before returning (small objects).

        Returns:
            ``(response, refused)``: the urllib3 response of a 200 or 206 answer (a stream unless
            ``preload``; the caller releases it), or None when the caller must ask the gateway: no
            cluster map, a namespaced bucket, the direct path is off (:meth:`direct_unreachable`,
            :meth:`direct_allowed`), the target refused the connection or did not accept it within the
            connect timeout (``refused`` True; the map is fetched again soon), it answered 403
            (no map refresh: a 403 whose body says direct access is denied turns the direct path off
            at once, :meth:`deny_direct`; any other 403 returns ``refused`` True and turns it off when
            the caller then reports the gateway served the object, :meth:`direct_unreachable`), or it
            answered anything else (a 404 from a stale map, 401, 416: the map is fetched again soon,
            and the gateway's answer is the one that counts).

        Raises:
            whatever the request raises once connected (a reset, a read timeout waiting for the
            answer, a TLS error): the caller's retry loop classifies it.
        """
        import urllib3.exceptions as u3

        self._forbidden.last = False
        if u.has_namespace or not u.path or time.monotonic() < self._direct_off_until or not self.direct_allowed():
            return None, False
        url = self.direct_url(u, bucket)
        if url is None:
            return None, False
        try:
            resp = self.pool.request("GET", url, headers={**self.headers, **headers} if headers else self.headers,
                                     timeout=self.timeout, redirect=False, preload_content=preload)
        except (u3.NewConnectionError, u3.ConnectTimeoutError) as e:
            logger.debug("%s: target %s unreachable (%s)", u, url.split("/v1/", 1)[0], type(e).__name__)
            self.refresh_cluster_map_soon()
            return None, True
        if resp.status in (200, 206):
            self._refused_but_served = 0
            return resp, False
        logger.debug("%s: the target answered %d; asking the gateway", u, resp.status)
        if resp.status == 403:
            body = _error_body(resp, preload)
            if says_direct_denied(body):
                self.deny_direct(f"a target answered 403 {' '.join(body.split())[:80]!r}")
                return None, False
            # a token the cluster does not accept is refused by the gateway too: see direct_unreachable
            self._forbidden.last = True
            return None, True
        resp.release_conn() if preload else resp.close()
        self.refresh_cluster_map_soon()
        return None, False

    def direct_unreachable(self) -> None:
        """A target refused a direct GET (:meth:`open_direct` returned ``refused``) that the gateway then
        served. After a 403 on this thread: targets deny direct requests (:meth:`deny_direct`). Otherwise
        the target was restarting, the map is stale (it is fetched again), or targets are not reachable
        from this client (e.g. behind a Kubernetes service): after :data:`DIRECT_REFUSALS_OFF` of these in
        a row (no direct GET served in between), direct GETs stay off (everything goes through the
        gateway) for :data:`DIRECT_OFF_SECONDS` s."""
        if getattr(self._forbidden, "last", False):
            self._forbidden.last = False
            self.deny_direct("a target answered 403 to a GET the gateway then served")
            return
        self.refresh_cluster_map_soon(0.0)
        self._refused_but_served += 1
        if self._refused_but_served < DIRECT_REFUSALS_OFF:  # a target that was restarting: it happens
            return
        self._refused_but_served = 0
        if time.monotonic() >= self._direct_off_until:
            logger.warning("targets refused %d direct GETs in a row that the gateway served; reading through the "
                           "gateway %s for %.0fs", DIRECT_REFUSALS_OFF, self.config.endpoint, DIRECT_OFF_SECONDS)
        self._direct_off_until = time.monotonic() + DIRECT_OFF_SECONDS


def _error_body(resp: Any, preload: bool) -> str:
    """The first bytes of an error answer's body, as text; the connection goes back to the pool (or is
    closed when the body is longer)."""
    try:
        data = resp.data if preload else resp.read(ERROR_BODY_LIMIT + 1, decode_content=True)
    except Exception:  # noqa: BLE001 - a broken error answer: nothing to learn from it
        data = b""
    if not preload and len(data) > ERROR_BODY_LIMIT:
        resp.close()
    else:
        resp.release_conn()
    return bytes(data[:ERROR_BODY_LIMIT]).decode("utf-8", "replace")


def says_direct_denied(body: str) -> bool:
    """True when an error body says direct (target) access is denied: AuthN clusters' 403 to a request
    that did not come through the gateway."""
    text = body.lower()
    return "direct" in text and "denied" in text


_LAST_MAPS: Dict[str, Any] = {}
"""The last cluster map fetched in this process, per endpoint: inherited by forked children as a seed
(data, not connections: every process still makes its own connections and fetches its own map)."""

CLUSTER_MAP_RETRY = 5.0
"""Seconds between attempts to fetch a cluster map that is due while the gateway does not answer."""

DIRECT_OFF_SECONDS = 30.0
"""Seconds direct-to-target GETs stay off once targets look unreachable from this client."""

DIRECT_DENIED_OFF_SECONDS = 300.0
"""Seconds direct requests to targets stay off once targets denied one (AuthN): then one is tried again."""

ERROR_BODY_LIMIT = 4096
"""Bytes of a target's error answer read to tell why it refused."""

DIRECT_REFUSALS_OFF = 3
"""Direct GETs refused in a row, each then served by the gateway, that make targets look unreachable."""

BATCH_READ_TIMEOUT = 5.0
"""Seconds a batch GET reply may stall between bytes before its missing entries are fetched one by one."""

PROBE_READ_TIMEOUT = 5.0
"""Seconds the endpoint probe waits for an answer once connected (at most ``read_timeout``)."""

PROBE_BODY_LIMIT = 4096
"""Bytes of the probe's answer read, at most."""

PROBE_INTERVAL = 2.0
"""Seconds between endpoint probes while the endpoint does not answer."""


def _answers_like_ais(resp: Any, head: bytes) -> bool:
    import json

    if any(name.lower().startswith("ais-") for name in resp.headers):
        return True
    if "json" not in resp.headers.get("Content-Type", ""):
        return False
    try:
        body = json.loads(head)
    except ValueError:
        return False
    return isinstance(body, dict) and "node" in body and "status" in body


def _describe(resp: Any, head: bytes) -> str:
    """``HTTP 200 (text/html): '<html>...'``: what answered, without headers (they may echo credentials)."""
    ctype = resp.headers.get("Content-Type", "no content type")
    text = " ".join(head.decode("utf-8", "replace").split())
    return f"HTTP {resp.status_code} ({ctype})" + (f": {text[:80]!r}" if text else "")


def uname(u: AISUrl) -> str:
    """AIS's unified object name (``provider/@uuid#ns/bucket/name``) for cluster-map placement."""
    return f"{u.provider}/@{u.ns_uuid}#{u.ns_name}/{u.bucket}/{u.path}"


def _sdk_client(c: ClientConfig, read_timeout: Optional[float] = None, attempts: int = 4) -> Any:
    from aistore.sdk import Client as SDKClient

    from .retry import sdk_retry_config

    client = SDKClient(
        c.endpoint,
        skip_verify=c.skip_verify,
        ca_cert=c.ca_cert,
        timeout=(c.connect_timeout, read_timeout or c.read_timeout),
        retry_config=sdk_retry_config(connect_budget=max(c.connect_timeout * 2, 5.0), attempts=attempts),
        token=c.token,
        max_pool_size=c.max_pool_size,
    )
    if c.ca_cert or c.skip_verify:
        # the SDK makes one requests session per process: pin every one it makes (and the one it made)
        manager = client._request_client.session_manager
        create = manager._create_session
        manager._create_session = lambda: _pin_verify(create(), c)
        for session in manager._session_pool.values():
            _pin_verify(session, c)
    return client


def _pin_verify(session: Any, c: ClientConfig) -> Any:
    """Make ``session`` verify with ``c``'s CA bundle (or not at all, with skip_verify) whatever the environment.

    requests lets ``REQUESTS_CA_BUNDLE`` / ``CURL_CA_BUNDLE`` replace a session's own ``verify`` on every
    request (``trust_env``), so an explicit ``ca_cert`` / ``AIS_CLIENT_CA`` would lose to a system-wide
    bundle that does not hold the cluster's CA. Proxy and netrc settings still come from the environment.
    """
    verify: Any = False if c.skip_verify else c.ca_cert
    merge = session.merge_environment_settings

    def merge_pinned(url: Any, proxies: Any, stream: Any, _verify: Any, cert: Any) -> Any:
        settings = merge(url, proxies, stream, verify, cert)
        settings["verify"] = verify
        return settings

    session.merge_environment_settings = merge_pinned
    session.verify = verify
    return session


def _requests_session(c: ClientConfig) -> Any:
    import requests
    from requests.adapters import HTTPAdapter

    session = requests.Session()
    # requests otherwise re-reads netrc and proxy settings on every request (~15% of pack's CPU)
    session.trust_env = any(os.environ.get(v) for v in _ENV_THAT_REQUESTS_READS)
    session.verify = False if c.skip_verify else (c.ca_cert or True)
    if c.ca_cert or c.skip_verify:
        _pin_verify(session, c)
    if c.token:
        session.headers["Authorization"] = f"Bearer {c.token}"
    adapter = HTTPAdapter(pool_connections=c.max_pool_size, pool_maxsize=c.max_pool_size)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _urllib3_pool(c: ClientConfig) -> Tuple[Any, Any]:
    import urllib3

    kw: Dict[str, Any] = {}
    if c.endpoint.startswith("https://"):
        kw = {"cert_reqs": "CERT_NONE"} if c.skip_verify else {"ca_certs": c.ca_cert} if c.ca_cert else {}
    pool = urllib3.PoolManager(num_pools=64, maxsize=max(c.max_pool_size, DIRECT_POOL_MIN), block=False,
                               retries=False, **kw)
    return pool, urllib3.Timeout(connect=c.connect_timeout, read=c.read_timeout)
