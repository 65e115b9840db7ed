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

The token never appears in a repr, a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Optional, Union

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


def _env_bool(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class ClientConfig:
    """Resolved client settings. Immutable; build one with :meth:`resolve`."""

    endpoint: str
    token: Optional[str] = field(default=None, repr=False)
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
            ConfigError: an endpoint that is not http(s)://, or a non-positive number.
        """
        endpoint = (endpoint or os.environ.get("AIS_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")
        if not endpoint.startswith(("http://", "https://")):
            raise ConfigError(
                f"AIS endpoint {endpoint!r} must start with http:// or https://",
                hint="e.g. AIS_ENDPOINT=http://127.0.0.1:8080",
            )
        config = cls(
            endpoint=endpoint,
            token=token or os.environ.get("AIS_AUTHN_TOKEN") or None,
            ca_cert=ca_cert or os.environ.get("AIS_CLIENT_CA") or None,
            skip_verify=skip_verify if skip_verify is not None else _env_bool("AIS_SKIP_VERIFY_CRT"),
            max_pool_size=int(max_pool_size or _env_float("AIS_MAX_CONN_POOL", 16)),
            connect_timeout=connect_timeout or _env_float("AIS_CONNECT_TIMEOUT", 3.0),
            read_timeout=read_timeout or _env_float("AIS_READ_TIMEOUT", 20.0),
            retry_seconds=retry_seconds if retry_seconds is not None else _env_float("AIS_WDS_RETRY_SECONDS", 60.0),
        )
        for name in ("max_pool_size", "connect_timeout", "read_timeout"):
            if getattr(config, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(config, name)}")
        if config.retry_seconds < 0:
            raise ConfigError(f"retry_seconds must be >= 0, got {config.retry_seconds}")
        return config


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

    @classmethod
    def of(cls, client: Union[Client, str, None] = None) -> Client:
        """Return ``client`` if it is a Client, else a new one for that endpoint (or the default)."""
        return client if isinstance(client, Client) else cls(client)

    @property
    def endpoint(self) -> str:
        return self.config.endpoint

    @property
    def sdk(self) -> Any:
        """The aistore SDK ``Client`` of this process (created on first use, rebuilt after fork)."""
        return self._connections.get().sdk

    @property
    def http(self) -> Any:
        """A ``requests.Session`` of this process with the same TLS, auth and pool settings as the SDK
        client, for the few requests the SDK cannot shape (see ``ais_wds.writer``)."""
        return self._connections.get().http

    def connections(self) -> Connections:
        """This process's :class:`~ais_wds._core.connections.Connections` (for the core's fetchers)."""
        return self._connections.get()

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
        return {"config": self.config}

    def __setstate__(self, state: Dict[str, Any]) -> None:
        self.config = state["config"]
        self._connections = ProcessLocal(self._connect)

    def __repr__(self) -> str:
        return f"Client(endpoint={self.config.endpoint!r})"

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, Client) and other.config == self.config

    def __hash__(self) -> int:
        return hash(self.config)
