"""The opener of ``ais://`` (and routed cloud) URLs that ais_wds installs in webdataset's ``gopen`` and in
wids' download handlers, and the rule of which schemes go through AIS.

:class:`AISOpener` opens a URL for reading (the resuming stream of :func:`ais_wds.open_object`) or
writing (the all-or-nothing :class:`ais_wds.writer.ObjectWriter`); :func:`routed_schemes` says which
schemes it serves (``ais``, plus cloud schemes named by ``AIS_WDS_ROUTE`` / ``USE_AIS_FOR`` or by the
caller); :func:`opens_through_ais` is the rule for one URL (the above, plus every URL that
:func:`ais_wds.shard_urls` made: a :class:`~ais_wds.streaming.shards.ShardURL`). Registration lives in
:mod:`ais_wds.streaming.gopen` and :mod:`ais_wds.streaming.wids`.
Imports neither webdataset nor torch.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, List, Optional, Union
from urllib.parse import urlsplit

from .._core.process_local import ProcessLocal
from ..client import Client
from ..errors import ConfigError
from ..objects.reader import DEFAULT_BUFSIZE, open_object
from ..objects.writer import open_writer
from ..urls import SCHEME_TO_PROVIDER
from .shards import ShardURL


class AISOpener:
    """A gopen handler, called by webdataset as ``opener(url, mode, bufsize, **kw)``.

    Args:
        client: the :class:`Client` to use; None builds one from the environment on first use in
            each process (so ``AIS_ENDPOINT`` set after ``import ais_wds`` still counts).
    """

    def __init__(self, client: Union[Client, str, None] = None):
        self._client = Client.of(client) if client is not None else None
        self._from_env: ProcessLocal[Client] = ProcessLocal(Client)

    @property
    def client(self) -> Client:
        return self._client if self._client is not None else self._from_env.get()

    def __call__(self, url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> Any:
        if mode == "rb":
            return open_object(url, self.client, bufsize=max(bufsize, DEFAULT_BUFSIZE))
        if mode == "wb":
            return open_writer(url, self.client)
        raise ValueError(f"{url}: ais_wds opens only 'rb' and 'wb', not {mode!r}")

    def __repr__(self) -> str:
        return f"AISOpener({self._client!r})"

    def __reduce__(self) -> Any:
        return (AISOpener, (self._client,))


ROUTE_ENV = "AIS_WDS_ROUTE"
"""Environment variable: cloud schemes whose webdataset URLs go through AIS (``s3:gs``, or ``s3,gs``)."""


def routed_schemes(schemes: Optional[Iterable[str]] = None) -> List[str]:
    """``ais`` plus the cloud schemes routed through AIS: ``schemes`` if given, else those named by
    ``AIS_WDS_ROUTE`` and webdataset's ``USE_AIS_FOR``; each with its provider's aliases (``s3`` -> ``s3``,
    ``aws``).

    Raises:
        ConfigError: a scheme AIS does not reach (the message names where it came from).
    """
    if schemes is not None:
        named, origin = list(schemes), "register(schemes=...)"
    else:
        named, origin = [], f"{ROUTE_ENV} / USE_AIS_FOR"
        for var in (ROUTE_ENV, "USE_AIS_FOR"):
            named += [x for x in os.environ.get(var, "").replace(",", ":").split(":") if x.strip()]
    out = ["ais"]
    for scheme in (x.strip().lower() for x in named):
        provider = SCHEME_TO_PROVIDER.get(scheme)
        if provider is None:
            raise ConfigError(f"{origin}: {scheme!r} is not a scheme AIS reaches",
                              hint=f"use some of {', '.join(sorted(SCHEME_TO_PROVIDER))}")
        out += [s for s, p in SCHEME_TO_PROVIDER.items() if p == provider and s not in out]
    return out


def opens_through_ais(url: str, routed: Optional[Iterable[str]] = None) -> bool:
    """The routing rule, for one URL: True when ais_wds (not webdataset's or wids' own handler) opens it.

    That is an ``ais://`` URL; a URL of a scheme routed through AIS (``routed``, default
    :func:`routed_schemes` of the environment); and any URL made by :func:`ais_wds.shard_urls` (a
    :class:`~ais_wds.streaming.shards.ShardURL`, which keeps the mark in pickles sent to spawned workers)
    whose scheme AIS reaches: its shards were listed through AIS, so they are read through AIS. A
    ``gs://`` string the user typed stays the other library's own unless its scheme is routed.
    """
    scheme = urlsplit(str(url)).scheme.lower()
    if scheme not in SCHEME_TO_PROVIDER:
        return False
    if scheme == "ais" or isinstance(url, ShardURL):
        return True
    return scheme in (routed_schemes() if routed is None else routed_schemes(routed))
