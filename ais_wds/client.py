"""Client configuration: the one place that decides endpoint, auth, TLS, pool size, timeouts and retries.

:class:`Client` is what every ais_wds front end holds. It is a small picklable value (only its
:class:`ClientConfig` crosses process boundaries); the aistore SDK client behind it is created lazily
in the process that uses it and rebuilt after ``fork`` and after unpickling, so DataLoader workers
under fork, spawn and forkserver each get their own. A Client owns every connection ais_wds makes (SDK
client, HTTP session, direct-GET pool, cluster map: see ``ais_wds._core.connections``); every front
end that holds one Client shares them.

Resolution order for every setting: explicit argument, then environment variable, then default.

    endpoint        AIS_ENDPOINT                      http://localhost:8080
    token           AIS_AUTHN_TOKEN                   none
    ca_cert         AIS_CLIENT_CA                     system CAs
    skip_verify     AIS_SKIP_VERIFY_CRT               false
    max_pool_size   AIS_MAX_CONN_POOL                 16
    connect_timeout AIS_CONNECT_TIMEOUT               3 s
    read_timeout    AIS_READ_TIMEOUT                  20 s
    retry_seconds   AIS_WDS_RETRY_SECONDS             60 s  (time budget to resume a broken read)

The token never appears in a repr, a log line or an error message; one that cannot be an HTTP header
value (a trailing newline read from a file) is a ConfigError before any request. The first use of a
Client in a process asks the endpoint whether it is AIS (see :meth:`Client.connections`).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union
from urllib.parse import urlsplit

from ._core.connections import Connections
from ._core.process_local import ProcessLocal
from .errors import ConfigError
from .urls import AISUrl, parse_url

logger = logging.getLogger(__name__)

DEFAULT_ENDPOINT = "http://localhost:8080"


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not a number") from None


def _number(name: str, value: Any, env: str, default: float) -> float:
    """An explicit setting, else the environment variable, else the default; finite, a real number."""
    if value is None:
        number = _env_float(env, default)
    elif isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {type(value).__name__}")
    else:
        number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{name} must be a finite number, got {number}")
    return number


def _check_endpoint(endpoint: str) -> str:
    """``http(s)://host[:port]`` with an optional path prefix; no credentials, query, fragment or spaces."""
    hint = "e.g. AIS_ENDPOINT=http://127.0.0.1:8080"
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(f"AIS endpoint {endpoint!r} must start with http:// or https://", hint=hint)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in endpoint):
        raise ConfigError(f"AIS endpoint {endpoint!r} contains whitespace or a control character", hint=hint)
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"AIS endpoint {endpoint!r} has an invalid port", hint=hint) from None
    if not parts.hostname:
        raise ConfigError(f"AIS endpoint {endpoint!r} has no host", hint=hint)
    if parts.username is not None or parts.password is not None:
        raise ConfigError("the AIS endpoint must not carry credentials (user:password@); use token= or "
                          "AIS_AUTHN_TOKEN", hint=hint)
    if parts.query or parts.fragment or "?" in endpoint or "#" in endpoint:
        raise ConfigError(f"AIS endpoint {endpoint!r} must not have a query or fragment", hint=hint)
    if port == 0:
        raise ConfigError(f"AIS endpoint {endpoint!r} has port 0", hint=hint)
    return endpoint


_TOKEN68 = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def _check_token(token: str) -> None:
    """A bearer token must be an RFC 6750 token68: checked here so a bad one never reaches the HTTP layer,
    whose errors would quote it. The message shows neither the token nor its length."""
    if not _TOKEN68.fullmatch(token):
        raise ConfigError("the auth token (token= or AIS_AUTHN_TOKEN) contains a character a bearer token cannot "
                          "have (whitespace such as a trailing newline, a control character, or non-ASCII)",
                          hint="strip the token, e.g. AIS_AUTHN_TOKEN=$(tr -d '[:space:]' < token-file)")


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings. Immutable; build one with :meth:`resolve`."""

    endpoint: str
    token: Optional[str] = field(default=None, repr=False)
    token_source: str = field(default="none", compare=False)
    """Where the token came from: ``"token="``, ``"AIS_AUTHN_TOKEN"`` or ``"none"`` (named in errors)."""
    ca_cert: Optional[str] = None
    skip_verify: bool = False
    max_pool_size: int = 16
    connect_timeout: float = 3.0
    read_timeout: float = 20.0
    retry_seconds: float = 60.0

    @classmethod
    def resolve(
        cls,
        endpoint: Optional[str] = None,
        *,
        token: Optional[str] = None,
        ca_cert: Optional[str] = None,
        skip_verify: Optional[bool] = None,
        max_pool_size: Optional[int] = None,
        connect_timeout: Optional[float] = None,
        read_timeout: Optional[float] = None,
        retry_seconds: Optional[float] = None,
    ) -> ClientConfig:
        """Fill every unset argument from the environment, then from defaults, and validate.

        Raises:
            ConfigError: an endpoint that is not ``http(s)://host[:port]`` (no spaces, credentials, query),
                a token that is not a valid bearer token (the message shows neither it nor its length),
                a setting that is not a finite number, a non-positive timeout or pool size, a negative
                retry budget, or a CA bundle that is not a file. Nothing is sent before these checks.
        """
        if endpoint is not None and not isinstance(endpoint, str):
            raise ConfigError(f"the AIS endpoint must be a string, got {type(endpoint).__name__}")
        endpoint = _check_endpoint((endpoint or os.environ.get("AIS_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/"))
        source = "token=" if token else "none"
        if token is None:
            token = os.environ.get("AIS_AUTHN_TOKEN")
            source = "AIS_AUTHN_TOKEN" if token else "none"
        if token is not None and not isinstance(token, str):
            raise ConfigError(f"the auth token must be a string, got {type(token).__name__}")
        if token:
            _check_token(token)
        pool = _number("max_pool_size", max_pool_size, "AIS_MAX_CONN_POOL", 16)
        if pool != int(pool):
            raise ConfigError(f"max_pool_size must be a whole number, got {pool}")
        config = cls(
            endpoint=endpoint,
            token=token or None,
            token_source=source,
            ca_cert=ca_cert or os.environ.get("AIS_CLIENT_CA") or None,
            skip_verify=skip_verify if skip_verify is not None else _env_bool("AIS_SKIP_VERIFY_CRT"),
            max_pool_size=int(pool),
            connect_timeout=_number("connect_timeout", connect_timeout, "AIS_CONNECT_TIMEOUT", 3.0),
            read_timeout=_number("read_timeout", read_timeout, "AIS_READ_TIMEOUT", 20.0),
            retry_seconds=_number("retry_seconds", retry_seconds, "AIS_WDS_RETRY_SECONDS", 60.0),
        )
        for name in ("max_pool_size", "connect_timeout", "read_timeout"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
        if config.retry_seconds < 0:
            raise ConfigError(f"retry_seconds must be >= 0, got {config.retry_seconds}")
        if config.ca_cert is not None and not os.path.exists(config.ca_cert):
            raise ConfigError(f"CA bundle {config.ca_cert!r} (ca_cert / AIS_CLIENT_CA) does not exist")
        return config

    def __reduce__(self) -> Any:
        """Pickles carry the token only to a child process being started (DataLoader workers, ``mp.spawn``:
        multiprocessing's spawn and forkserver); any other pickle leaves it out, and unpickling takes
        ``AIS_AUTHN_TOKEN`` of the process that loads it instead."""
        import multiprocessing.context

        state = dataclasses.asdict(self)
        if multiprocessing.context.get_spawning_popen() is None:
            state["token"] = None
        return _unpickle_config, (state,)

    def __copy__(self) -> ClientConfig:
        return self

    def __deepcopy__(self, memo: Any) -> ClientConfig:
        return self


def _unpickle_config(state: Dict[str, Any]) -> ClientConfig:
    if state["token"] is None and state["token_source"] != "none":
        state["token"] = os.environ.get("AIS_AUTHN_TOKEN") or None
        if state["token"]:
            state["token_source"] = "AIS_AUTHN_TOKEN"
        elif state["token_source"] == "token=":
            state["token_source"] = "token= (left out of a pickle; AIS_AUTHN_TOKEN unset here)"
    return ClientConfig(**state)


class Client:
    """A handle on one AIS cluster, safe to pickle and to use after fork.

    Args:
        endpoint: AIS gateway URL; see the module docstring for the environment fallbacks.
        **settings: any other :class:`ClientConfig` field (token, ca_cert, skip_verify,
            max_pool_size, connect_timeout, read_timeout, retry_seconds).

    Thread safety: one Client may be shared by threads (requests sessions are shared per process,
    as the aistore SDK does). Process safety: each process builds its own SDK client on first use.
    """

    def __init__(self, endpoint: Union[str, ClientConfig, None] = None, **settings: Any):
        if isinstance(endpoint, ClientConfig):
            self.config = dataclasses.replace(endpoint, **settings) if settings else endpoint
        else:
            self.config = ClientConfig.resolve(endpoint, **settings)
        self._connections: ProcessLocal[Connections] = ProcessLocal(self._connect)
        self._answered = False

    @classmethod
    def of(cls, client: Union[Client, str, None] = None) -> Client:
        """Return ``client`` if it is a Client, else a new one for that endpoint (or the default)."""
        return client if isinstance(client, Client) else cls(client)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def sdk(self) -> Any:
        """The aistore SDK ``Client`` of this process (created on first use, rebuilt after fork).

        Raises:
            ConnectError: the endpoint answered, and not as AIS does (checked once per process).
        """
        return self.connections().sdk

    @property
    def http(self) -> Any:
        """A ``requests.Session`` of this process with the same TLS, auth and pool settings as the SDK
        client, for the few requests the SDK cannot shape (see ``ais_wds.writer``).

        Raises:
            ConnectError: as :attr:`sdk`.
        """
        return self.connections().http

    @staticmethod
    def load_sdk() -> None:
        """Import the aistore SDK in this process now, without connecting.

        ``import ais_wds`` leaves the SDK unimported (it is imported on the first request). Front ends call
        this when they are built, so that DataLoader workers forked later inherit the import instead of each
        paying it (~0.7 s, more on a busy machine) before its first sample.
        """
        import aistore.sdk  # noqa: F401

    def connections(self) -> Connections:
        """This process's :class:`~ais_wds._core.connections.Connections` (for the core's fetchers).

        The first call in a process asks the endpoint whether it is AIS (one ``GET /v1/health``); an
        endpoint that answers as something else (an HTML page, a 404 without AIS's headers) raises
        :class:`~ais_wds.errors.ConnectError` naming the endpoint and what answered, so no other server's
        answer is ever taken for data. An endpoint that does not answer at all is asked again later.

        Raises:
            ConnectError: the endpoint is not AIS, or accepts connections but does not answer.
        """
        conn = self._connections.get()
        if not conn.verified:
            conn.verify_endpoint()
            self._answered = self._answered or conn.verified
        return conn

    @property
    def answered(self) -> bool:
        """True once the endpoint answered as AIS, in this process or (before pickling or fork) in the
        one that made this Client. The core retries a refused connection to such an endpoint (a gateway
        restarting) within ``retry_seconds``; one that never answered fails in seconds."""
        conn = self._connections.peek()
        return self._answered or (conn is not None and conn.verified)

    def _connect(self) -> Connections:
        return Connections(self.config)

    def bucket(self, url: Union[str, AISUrl]) -> Any:
        """The SDK ``Bucket`` for ``url``'s bucket (no request is made)."""
        u = parse_url(url)
        namespace = None
        if u.has_namespace:
            from aistore.sdk.namespace import Namespace

            namespace = Namespace(uuid=u.ns_uuid, name=u.ns_name)
        return self.sdk.bucket(u.bucket, provider=u.provider, namespace=namespace)

    def object(self, url: Union[str, AISUrl]) -> Any:
        """The SDK ``Object`` for ``url`` (no request is made)."""
        u = parse_url(url)
        return self.bucket(u).object(u.path)

    def __getstate__(self) -> Dict[str, Any]:
        return {"config": self.config, "answered": self.answered}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.config = state["config"]
        self._connections = ProcessLocal(self._connect)
        self._answered = bool(state.get("answered", False))

    def __repr__(self) -> str:
        return f"Client(endpoint={self.config.endpoint!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Client) and other.config == self.config

    def __hash__(self) -> int:
        return hash(self.config)
