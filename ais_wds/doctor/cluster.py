"""``ais-wds doctor``'s cluster checks: TLS, the endpoint and its AIS version, auth, cluster health, and
whether this client reaches every target directly.

Each check returns :class:`~ais_wds.doctor.check.Check` lines; :func:`check_cluster` runs them in order
and says whether the cluster can be used for the data checks. Messages never show the token (an answer
from the cluster that quotes it has it replaced by ``***``). Imports neither torch nor webdataset.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import urlsplit

from ..client import Client
from ..errors import AISWdsError
from .check import FAIL, OK, SKIP, WARN, Check

TOKEN_SOON = 3600.0
"""Seconds of validity left under which a token is a WARN."""

PROBE_TIMEOUT = 5.0
"""Seconds any one request of the cluster checks waits for an answer."""

GATEWAY_COST = ("every GET then goes through the gateway: one more hop per object, and the gateway's network "
                "link caps the throughput of all readers")


@dataclass
class ClusterFacts:
    """What the cluster checks learned, for the data checks and the report."""

    usable: bool = False  # the endpoint answered as AIS and the token (if needed) was accepted
    version: str = ""
    smap: Dict[str, Any] = field(default_factory=dict)
    direct: bool = False  # every target reachable from here


def _scrub(text: str, token: Optional[str]) -> str:
    return text.replace(token, "***") if token else text


def _hostport(endpoint: str) -> Tuple[str, int]:
    parts = urlsplit(endpoint)
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def check_tls(client: Client) -> Check:
    """For an ``https`` endpoint: a TLS handshake that verifies the gateway's certificate against the CA
    (``AIS_CLIENT_CA`` / ``ca_cert``, else the system CAs) and the endpoint's host name."""
    cfg = client.config
    if not cfg.endpoint.startswith("https://"):
        return Check("tls", OK, "plain http endpoint: no TLS to check")
    host, port = _hostport(cfg.endpoint)
    ca = f"the CA in {cfg.ca_cert}" if cfg.ca_cert else "the system CAs"
    if cfg.skip_verify:
        return Check("tls", WARN, "certificate verification is off (AIS_SKIP_VERIFY_CRT / skip_verify)",
                     "set AIS_CLIENT_CA to the cluster's CA bundle and drop AIS_SKIP_VERIFY_CRT")
    ctx = ssl.create_default_context(cafile=cfg.ca_cert) if cfg.ca_cert else ssl.create_default_context()
    try:
        with socket.create_connection((host, port), timeout=cfg.connect_timeout) as sock:
            with ctx.wrap_socket(sock, server_hostname=host) as tls:
                tls.settimeout(PROBE_TIMEOUT)
                return Check("tls", OK, f"{tls.version()}: the gateway's certificate is valid for {host} and "
                                        f"signed by {ca}")
    except ssl.SSLCertVerificationError as e:
        if e.verify_code in (62, 64):  # X509_V_ERR_HOSTNAME_MISMATCH, X509_V_ERR_IP_ADDRESS_MISMATCH
            return Check("tls", FAIL, f"the gateway's certificate is not for {host!r}: {e.verify_message}",
                         "put the host name (or IP) the certificate names in AIS_ENDPOINT, or re-issue the "
                         "certificate with this name in its subjectAltName")
        return Check("tls", FAIL, f"the gateway's certificate is not signed by {ca}: {e.verify_message}",
                     "set AIS_CLIENT_CA (or --ca-cert) to the CA bundle that signed the cluster's certificate "
                     "(the cluster's ca.crt)")
    except ssl.SSLError as e:
        return Check("tls", FAIL, f"TLS handshake with {host}:{port} failed: {e.reason or e}",
                     "check that the endpoint speaks https on this port (or use http://)")
    except OSError as e:
        return Check("tls", SKIP, f"no connection to {host}:{port} ({type(e).__name__}): see endpoint")


def _get(client: Client, path: str) -> Any:
    """GET ``endpoint + path`` through the client's session (TLS and token), no retries."""
    return client.http.get(f"{client.endpoint}{path}", timeout=(client.config.connect_timeout, PROBE_TIMEOUT),
                           allow_redirects=False)


def check_endpoint(client: Client, facts: ClusterFacts) -> Check:
    """The endpoint answers ``GET /v1/health`` as an AIS gateway."""
    import requests

    endpoint = client.endpoint
    try:
        resp = _get(client, "/v1/health")
    except AISWdsError as e:  # answered, but not as AIS (the client's own probe)
        return Check("endpoint", FAIL, str(e), "point AIS_ENDPOINT (or --endpoint) at an AIS gateway, "
                                               "e.g. http://host:8080")
    except requests.exceptions.SSLError:
        return Check("endpoint", SKIP, f"{endpoint}: TLS failed (see tls)")
    except requests.exceptions.RequestException as e:
        return Check("endpoint", FAIL, f"no answer from {endpoint} ({_reason(e)})",
                     "check AIS_ENDPOINT (or --endpoint): the host and port of a running AIS gateway, "
                     "reachable from this machine")
    with resp:
        if resp.status_code != 200 or not any(h.lower().startswith("ais-") for h in resp.headers):
            return Check("endpoint", FAIL, f"{endpoint} answered GET /v1/health with HTTP {resp.status_code} "
                                           "and not as AIS does", "point AIS_ENDPOINT at an AIS gateway")
    return Check("endpoint", OK, f"{endpoint} answers as an AIS gateway")


def _reason(e: BaseException) -> str:
    text = str(e)
    for marker in ("Connection refused", "Name or service not known", "timed out", "No route to host",
                   "Temporary failure in name resolution"):
        if marker in text:
            return marker.lower()
    return type(e).__name__


def token_expiry(token: str) -> Optional[float]:
    """The ``exp`` claim (Unix seconds) of a JWT, read without verifying it; None when it has none or the
    token is not a JWT."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        payload = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    exp = payload.get("exp") if isinstance(payload, dict) else None
    return float(exp) if isinstance(exp, (int, float)) else None


def check_auth(client: Client, facts: ClusterFacts) -> Check:
    """Token present, accepted (``GET /v1/daemon?what=smap`` needs one on a cluster with auth), and its
    expiry; keeps the cluster map for the next checks."""
    cfg = client.config
    token = cfg.token
    source = "AIS_AUTHN_TOKEN" if cfg.token_source == "AIS_AUTHN_TOKEN" else "token="
    try:
        resp = _get(client, "/v1/daemon?what=smap")
    except Exception as e:  # noqa: BLE001 - reported, never raised: the doctor goes on
        return Check("auth", FAIL, f"GET /v1/daemon?what=smap failed ({_reason(e)})",
                     "check the endpoint (see above) and retry")
    with resp:
        if resp.status_code in (401, 403):
            said = _scrub(_message(resp), token)
            if not token:
                return Check("auth", FAIL, f"the cluster requires a token and none is set (HTTP {resp.status_code}: "
                                           f"{said})", "set AIS_AUTHN_TOKEN to a token from AIS's AuthN "
                                                       "(`ais auth login USER`, then the token file)")
            return Check("auth", FAIL, f"the token from {source} was refused (HTTP {resp.status_code}: {said})",
                         "get a new token from this cluster's AuthN (`ais auth login USER`) and put it in "
                         "AIS_AUTHN_TOKEN; a token of another cluster or an expired one is refused")
        if resp.status_code != 200:
            return Check("auth", FAIL, f"GET /v1/daemon?what=smap answered HTTP {resp.status_code}: "
                                       f"{_scrub(_message(resp), token)}", "check the cluster's state (`ais show "
                                                                           "cluster`)")
        try:
            facts.smap = resp.json()
        except ValueError:
            facts.smap = {}
    facts.usable = True
    if not token:
        return Check("auth", OK, "no token set, and the cluster requires none")
    exp = token_expiry(token)
    if exp is None:
        return Check("auth", OK, f"token from {source} accepted (no expiry in it)")
    left = exp - time.time()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(exp))
    if left <= 0:
        return Check("auth", FAIL, f"token from {source} accepted but expired at {when}",
                     "get a new token (`ais auth login USER`) into AIS_AUTHN_TOKEN")
    if left < TOKEN_SOON:
        return Check("auth", WARN, f"token from {source} accepted; it expires in {left / 60:.0f} min ({when})",
                     "renew the token before a long job: AIS refuses every request once it expires")
    return Check("auth", OK, f"token from {source} accepted; it expires in {left / 3600:.1f} h ({when})")


def _message(resp: Any) -> str:
    try:
        return str(resp.json().get("message", ""))[:300]
    except ValueError:
        return resp.text[:300]


def check_version(client: Client, facts: ClusterFacts) -> Check:
    """The gateway's AIS version (``/v1/daemon?what=node_status``)."""
    try:
        resp = _get(client, "/v1/daemon?what=node_status")
        with resp:
            resp.raise_for_status()
            status = resp.json()
    except Exception as e:  # noqa: BLE001 - reported
        return Check("version", WARN, f"the gateway did not say its version ({_reason(e)})",
                     "ais_wds is tested with AIS 5.0 (aistore 1.5); check `ais show cluster`")
    facts.version = str(status.get("ais_version", "")).rstrip(".")
    major = facts.version.split(".")[0]
    if major.isdigit() and int(major) < 4:
        return Check("version", WARN, f"AIS {facts.version}: older than ais_wds is tested with (5.0)",
                     "upgrade the cluster to AIS 5.0, or expect batch GET and ranged archive reads to fall back")
    return Check("version", OK, f"AIS {facts.version or 'unknown'} ({status.get('deployment', '?')} deployment)")


def check_health(client: Client, facts: ClusterFacts) -> Check:
    """The primary says the cluster is ready; targets in the map, none in maintenance."""
    try:
        resp = _get(client, "/v1/health?prr=true")
        resp.close()
        ready = resp.status_code == 200
    except Exception:  # noqa: BLE001 - reported as not ready
        ready = False
    tmap: Dict[str, Any] = facts.smap.get("tmap") or {}
    pmap: Dict[str, Any] = facts.smap.get("pmap") or {}
    flagged = sorted(tid for tid, node in tmap.items() if node.get("flags"))
    what = f"{len(pmap)} gateway(s), {len(tmap)} target(s), cluster map v{facts.smap.get('version', '?')}"
    if not ready:
        return Check("health", FAIL, f"the cluster is not ready ({what})",
                     "wait for the cluster to start, or look at `ais show cluster` and the nodes' logs")
    if not tmap:
        return Check("health", FAIL, f"no target in the cluster map ({what})", "start or re-join the targets")
    if flagged:
        return Check("health", WARN, f"{what}; in maintenance or leaving: {', '.join(flagged)}",
                     "their objects are served by the other targets meanwhile; `ais show cluster` says why")
    return Check("health", OK, f"ready: {what}")


def check_direct(client: Client, facts: ClusterFacts) -> Check:
    """Whether this client can open a connection to every target's public address (ais_wds then reads
    small objects straight from the owning target, skipping the gateway's redirect)."""
    tmap: Dict[str, Any] = facts.smap.get("tmap") or {}
    if not tmap:
        return Check("direct reads", SKIP, "no cluster map")
    unreachable = []
    for tid, node in sorted(tmap.items()):
        url = (node.get("public_net") or {}).get("direct_url", "")
        host, port = _hostport(url)
        try:
            socket.create_connection((host, port), timeout=min(client.config.connect_timeout, 2.0)).close()
        except OSError as e:
            unreachable.append(f"{tid} at {host}:{port} ({_reason(e)})")
    if unreachable:
        return Check("direct reads", WARN, f"{len(unreachable)} of {len(tmap)} targets not reachable from here: "
                                           f"{'; '.join(unreachable[:3])}",
                     f"{GATEWAY_COST}. Run the job where the targets' public addresses are reachable (e.g. "
                     "inside the Kubernetes cluster, or expose the targets), or accept the cost")
    facts.direct = True
    return Check("direct reads", OK, f"all {len(tmap)} targets reachable directly: reads skip the gateway")


def check_cluster(client: Client) -> Tuple[List[Check], ClusterFacts]:
    """Run the cluster checks in order; the later ones are skipped when the endpoint or auth failed."""
    facts = ClusterFacts()
    checks = [check_tls(client)]
    if checks[0].status == FAIL:
        checks.append(Check("endpoint", SKIP, f"{client.endpoint}: TLS failed (see tls)"))
        return checks, facts
    checks.append(check_endpoint(client, facts))
    if checks[-1].status != OK:
        return checks, facts
    checks.append(check_auth(client, facts))
    if not facts.usable:
        return checks, facts
    checks += [check_version(client, facts), check_health(client, facts), check_direct(client, facts)]
    return checks, facts
