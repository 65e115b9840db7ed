"""Client configuration: the one place that decides endpoint, auth, TLS, pool size, timeouts and retries.

:class:`ClientConfig` is a small immutable value (the model layer: no connection, no SDK import); a
:class:`~ais_wds.client.Client` is a config plus the connections built from it. Only the config crosses
process boundaries.

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
value (a trailing newline read from a file) is a ConfigError before any request.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Dict, Optional
from urllib.parse import urlsplit

from .errors import ConfigError

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
