"""The client: a :class:`~ais_wds.config.ClientConfig` plus the connections built from it (transport layer).

:class:`Client` is what every ais_wds front end holds. It is a small picklable value (only its
:class:`ClientConfig` crosses process boundaries); the aistore SDK client behind it is created lazily
in the process that uses it and rebuilt after ``fork`` and after unpickling, so DataLoader workers
under fork, spawn and forkserver each get their own. A Client owns every connection ais_wds makes (SDK
client, HTTP session, direct-GET pool, cluster map: see ``ais_wds._core.connections``); every front
end that holds one Client shares them. Settings, their environment variables and defaults: see
:mod:`ais_wds.config` (``ClientConfig`` is re-exported here and from ``ais_wds``).

The first use of a Client in a process asks the endpoint whether it is AIS (see :meth:`Client.connections`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, Union

from ._core.connections import Connections
from ._core.process_local import ProcessLocal
from .config import ClientConfig
from .urls import AISUrl, parse_url

__all__ = ["Client", "ClientConfig"]


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
