"""Translate aistore SDK / requests exceptions into the ais_wds error hierarchy (core use only)."""

from __future__ import annotations

import time
from typing import Any, Optional

from ..errors import AISWdsError, ReadError
from ..metrics import core as metrics


class Backoff:
    """The retry budget of one operation: ``budget`` seconds in all, waits of 0.2 s doubling to 2 s.

    The clock starts at the first failure, so a long healthy stream keeps its whole budget for a resume.
    Used by every retry loop of the core (reader, writer), never by front ends.
    """

    def __init__(self, budget: float):
        self.budget = budget
        self.attempts = 0
        self._deadline: Optional[float] = None

    def next_delay(self) -> Optional[float]:
        """Seconds to wait before the next attempt, or None when the budget is spent."""
        now = time.monotonic()
        if self._deadline is None:
            self._deadline = now + self.budget
        if now >= self._deadline:
            return None
        delay = min(0.2 * 2 ** self.attempts, 2.0, self._deadline - now)
        self.attempts += 1
        metrics.count("retries")
        return float(delay)


def is_transient(exc: BaseException) -> bool:
    """True for failures worth a retry: dropped connections, timeouts, 408/429/5xx answers, and a gateway
    that answers it has no targets or is not ready yet (it restarted; see :data:`CLUSTER_NOT_READY`)."""
    import http.client

    import requests
    import urllib3.exceptions as u3
    from aistore.sdk.errors import AISError, ErrBckNotFound, ErrObjNotFound, ErrRemoteBckNotFound

    if isinstance(exc, http.client.HTTPException):  # IncompleteRead, a broken chunked body, ...
        return True
    if _is_tls_error(exc):  # a certificate that does not verify: not worth a retry
        return False
    if isinstance(exc, (ErrObjNotFound, ErrBckNotFound, ErrRemoteBckNotFound)):
        return False
    if isinstance(exc, AISError):
        if exc.status_code in (408, 429) or exc.status_code >= 500:
            return True
        return exc.status_code in (400, 404) and _cluster_not_ready(str(getattr(exc, "message", "") or exc))
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError,
                        u3.HTTPError, ConnectionError, TimeoutError)):
        return True
    from tenacity import RetryError

    return isinstance(exc, RetryError)


def _is_tls_error(exc: BaseException) -> bool:
    """A TLS handshake that failed (requests' ``SSLError``: it happens at connect) or a certificate that
    does not verify, however deep it is wrapped. A TLS error in the middle of a body (a cut connection)
    is neither: it is transient."""
    import ssl

    import requests

    seen = 0
    todo = [exc]
    while todo and seen < 8:
        e = todo.pop()
        seen += 1
        if isinstance(e, (requests.exceptions.SSLError, ssl.SSLCertVerificationError)) or \
                "certificate verify failed" in str(e).lower():
            return True
        todo.extend(x for x in (e.__cause__, e.__context__, getattr(e, "reason", None),
                                *(a for a in getattr(e, "args", ()) if isinstance(a, BaseException)))
                    if isinstance(x, BaseException))
    return False


def _tls_reason(exc: BaseException) -> str:
    """The words of the innermost certificate error (``certificate verify failed: self-signed
    certificate in certificate chain``) rather than the layers of requests and urllib3 around it."""
    import re

    text = str(exc)
    m = re.search(r"certificate verify failed: ([^()'\]\"]+)", text, re.IGNORECASE)
    return f"certificate verify failed: {m.group(1).strip()}" if m else _short(text)


CLUSTER_NOT_READY = ("no storage targets", "no proxies (gateways)", "not ready yet", "is starting up",
                     "smap not ready", "cluster map is not", "primary is not ready")
"""Fragments of the answers of a gateway that restarted and has no cluster map yet (AIS answers 400
"no storage targets in the cluster" until its targets rejoin): transient, retried within the budget."""


def _cluster_not_ready(message: str) -> bool:
    text = message.lower()
    return any(fragment in text for fragment in CLUSTER_NOT_READY)


def is_gateway_unreachable(exc: BaseException, endpoint: str) -> bool:
    """True when the AIS gateway at ``endpoint`` itself could not be reached (wrong or down endpoint).

    A refused connection to a *target* (after a redirect, e.g. while it restarts) is not this: it is
    transient and worth retrying.
    """
    from urllib.parse import urlsplit

    import requests
    from tenacity import RetryError

    if isinstance(exc, RetryError):
        exc = exc.last_attempt.exception() or exc
    if not isinstance(exc, requests.exceptions.ConnectionError) or isinstance(
            exc, requests.exceptions.ChunkedEncodingError):
        return False
    request = getattr(exc, "request", None)
    failed_url = getattr(request, "url", None) or ""
    gateway = urlsplit(endpoint).netloc
    if failed_url:
        return urlsplit(failed_url).netloc == gateway
    return f"port={urlsplit(endpoint).port}" in str(exc)


def translate(exc: BaseException, url: str, *, endpoint: Optional[str] = None,
              offset: Optional[int] = None, token_source: str = "none") -> AISWdsError:
    """Map ``exc`` (raised while working on ``url``) to an :class:`AISWdsError`; never leaks tokens.

    ``token_source`` (the client's ``config.token_source``: ``"token="``, ``"AIS_AUTHN_TOKEN"`` or
    ``"none"``, never the token) is named by an :class:`~ais_wds.errors.AuthError`.

    Not-found, request and connect errors are the classes of :mod:`ais_wds._core.sdk_errors`: the
    ais_wds error and the aistore SDK's matching exception at once.
    """
    import requests
    from aistore.sdk.errors import AISError, ErrBckNotFound, ErrObjNotFound, ErrRemoteBckNotFound

    from .sdk_errors import ConnectError, ObjectNotFoundError, RequestError

    if isinstance(exc, AISWdsError):
        return exc
    from tenacity import RetryError

    if isinstance(exc, RetryError):
        exc = exc.last_attempt.exception() or exc
    if isinstance(exc, (ErrBckNotFound, ErrRemoteBckNotFound)):
        return _bucket_not_found(exc, url)
    if isinstance(exc, ErrObjNotFound):
        return ObjectNotFoundError("object does not exist", url=url)
    if isinstance(exc, AISError):
        msg = _short(getattr(exc, "message", "") or str(exc))
        hint = None
        if exc.status_code in (401, 403):
            return _auth_error(exc.status_code, msg, url, endpoint, token_source)
        if exc.status_code == 404:
            return ObjectNotFoundError(f"not found: {msg}", url=url)
        return RequestError(f"AIS answered {exc.status_code}: {msg}", url=url, status=exc.status_code, hint=hint)
    if _is_tls_error(exc):
        where = f" of {endpoint}" if endpoint else ""
        return ConnectError(f"TLS certificate verification{where} failed: {_tls_reason(exc)}", url=url,
                            hint="set AIS_CLIENT_CA (or ca_cert=) to the CA bundle that signed the cluster's "
                                 "certificate, or AIS_SKIP_VERIFY_CRT=true to skip the check")
    if isinstance(exc, (requests.ConnectionError, ConnectionRefusedError)) and offset is None:
        where = f" at {endpoint}" if endpoint else ""
        return ConnectError(f"cannot connect to AIS{where}: {_short(str(exc))}", url=url)
    if offset is not None:
        return ReadError(f"read failed after retries: {type(exc).__name__}: {_short(str(exc))}", url=url,
                         offset=offset)
    return RequestError(f"request failed: {type(exc).__name__}: {_short(str(exc))}", url=url)


def _auth_error(status: int, msg: str, url: str, endpoint: Optional[str], source: str) -> AISWdsError:
    """AIS refused the request's token (or wanted one): an AuthError naming where the token came from."""
    import json

    from .sdk_errors import AuthError

    try:
        msg = str(json.loads(msg).get("message", msg))
    except (ValueError, AttributeError):
        pass
    sent = "no token was sent" if source == "none" else f"the token from {source} was refused"
    where = f" at {endpoint}" if endpoint else ""
    return AuthError(f"AIS{where} answered {status} ({sent}): {_short(msg)}", url=url, status=status,
                     token_source=source)


def _bucket_not_found(exc: BaseException, url: str) -> AISWdsError:
    """A missing bucket; for a cloud bucket (s3://, gs://, ...) with AIS's own reason.

    AIS answers "not found" both for a missing cloud bucket and for a cluster that has no backend for
    that provider ("AWS backend is missing in the cluster configuration") or no access to it.
    """
    import json

    from ..urls import parse_url
    from .sdk_errors import BucketNotFoundError

    try:
        provider = parse_url(url.split("?", 1)[0]).provider
    except AISWdsError:
        provider = "ais"
    if provider == "ais":
        return BucketNotFoundError("bucket does not exist", url=url)
    text = getattr(exc, "message", "") or str(exc)
    try:
        text = json.loads(text).get("message", text)
    except (ValueError, AttributeError):
        pass
    reason = _short(str(text).split(", err: ", 1)[-1])
    if "backend is missing" in reason:
        return BucketNotFoundError(f"this AIS cluster cannot reach {provider} buckets: {reason}", url=url,
                                   hint=f"deploy AIS with the {provider} backend and its credentials, or copy the "
                                        f"data into an ais:// bucket")
    return BucketNotFoundError(f"{provider} bucket not found or not accessible: {reason}", url=url,
                               hint="check the bucket name, and the cloud credentials configured on the AIS cluster")


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def sdk_retry_config(connect_budget: float, attempts: int = 4) -> Any:
    """HTTP and network retries for SDK requests: short, so an unreachable endpoint fails in seconds.

    Reads resume on their own (see ``ais_wds.reader``); these retries only cover one request, at most
    ``attempts`` tries of it over ``connect_budget`` s (batch GETs use 1: their fallback is the retry).
    """
    from aistore.sdk.retry_config import NETWORK_RETRY_EXCEPTIONS, RetryConfig
    from requests.exceptions import SSLError
    from tenacity import (
        Retrying,
        retry_if_exception_type,
        retry_if_not_exception_type,
        stop_after_attempt,
        stop_after_delay,
        wait_exponential,
    )
    from urllib3.util.retry import Retry

    return RetryConfig(
        # only 429/5xx answers are retried here: connect and read failures by network_retry (and the core's
        # resumes), other errors (a certificate that does not verify) never
        http_retry=Retry(total=3, backoff_factor=0.5, status_forcelist=[429, 500, 502, 503, 504],
                         connect=0, read=0, other=0, raise_on_status=False),
        network_retry=Retrying(
            wait=wait_exponential(multiplier=0.2, min=0.2, max=2.0),
            stop=stop_after_attempt(attempts) | stop_after_delay(connect_budget),
            # a certificate that does not verify will not verify on the next try either
            retry=retry_if_exception_type(NETWORK_RETRY_EXCEPTIONS) & retry_if_not_exception_type(SSLError),
            reraise=True,
        ),
    )
