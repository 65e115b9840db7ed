"""Native AIS handlers for webdataset's ``gopen``: the only global state ais_wds keeps.

Importing ``ais_wds`` calls :func:`register_on_import`: when webdataset is loaded (now, or whenever it
is imported later, by a hook on the import of ``webdataset.gopen``; this module itself imports neither
webdataset nor torch) :func:`register` puts an :class:`AISOpener` into
``webdataset.gopen.gopen_schemes`` for ``ais``, replacing webdataset's built-in ``ais`` handler (which
shells out to the ``ais`` CLI). Then::

    wds.WebDataset("ais://bucket/train-{000000..000099}.tar")   # reads through ais_wds's reader core
    wds.TarWriter("ais://bucket/out.tar")                        # writes through ais_wds's writer core

Reading returns the resuming stream of :func:`ais_wds.reader.open_object`; writing returns the
all-or-nothing :class:`ais_wds.writer.ObjectWriter`.

Cloud schemes (``s3``, ``gs``, ``az``, ``oc`` and their aliases ``aws``, ``gcp``, ``azure``, ``oci``) stay
webdataset's own unless the user routes them through AIS: ``AIS_WDS_ROUTE=s3:gs`` in the environment (read
at registration, so spawned workers see it too; webdataset's own ``USE_AIS_FOR`` is honoured the same
way), or ``ais_wds.register(schemes=["s3", "gs"])`` in the process (and its workers: use the variable or
``worker_init_fn`` there). Naming a provider's scheme routes all its aliases. URLs made by
:func:`ais_wds.shard_urls` (:class:`~ais_wds.streaming.shards.ShardURL`) open through AIS whatever the
scheme, routed or not: the other cloud schemes get a :class:`ShardURLRouter`, which sends a ``ShardURL``
to AIS (saying so once per process and scheme in an INFO log line) and any other URL to webdataset's own
handler (``gsutil`` for ``gs``, "no gopen handler" for ``s3``). The rule for one URL is
:func:`ais_wds.streaming.opener.opens_through_ais`. ``ais_wds.WebDataset`` and
the datasets never go through ``gopen``: they reach every provider through AIS whatever is registered.

Worker processes: under ``fork`` the registration is inherited. Under ``spawn``/``forkserver`` a worker
re-imports webdataset; it gets ais_wds's handlers back when the script imports ``ais_wds`` at top level,
when the dataset holds URLs made by :func:`ais_wds.shard_urls` (unpickling them imports ais_wds), or
with ``DataLoader(worker_init_fn=ais_wds.worker_init_fn)``.
"""

from __future__ import annotations

import logging
import threading
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, Optional, Set, Union
from urllib.parse import urlsplit

from .._core.after_import import call_after_import
from ..client import Client
from ..urls import SCHEME_TO_PROVIDER
from .opener import ROUTE_ENV, AISOpener, opens_through_ais, routed_schemes

__all__ = ["AISOpener", "ROUTE_ENV", "ShardURLRouter", "is_registered", "opens_through_ais", "register",
           "register_on_import", "routed_schemes", "worker_init_fn"]

logger = logging.getLogger(__name__)

_own: Dict[str, Any] = {}  # scheme -> webdataset's own handler that a routed AISOpener replaced
_told: Set[str] = set()  # schemes whose first ShardURL through AIS was logged in this process
_told_lock = threading.Lock()


class ShardURLRouter:
    """webdataset's gopen handler for a cloud scheme that is not routed through AIS: a URL made by
    :func:`ais_wds.shard_urls` (see :func:`~ais_wds.streaming.opener.opens_through_ais`) opens through AIS;
    any other URL goes to webdataset's own handler for the scheme (or its ``__default__``, which says
    "no gopen handler").

    Args:
        opener: the AIS opener for the URLs that go through AIS.
        own: webdataset's handler for the scheme; None when it has none.
    """

    def __init__(self, opener: AISOpener, own: Optional[Callable[..., Any]]):
        self.opener = opener
        self.own = own

    def __call__(self, url: str, mode: str = "rb", bufsize: int = 8192, **kw: Any) -> Any:
        if opens_through_ais(url, routed=()):
            _tell_once(url)
            return self.opener(url, mode, bufsize, **kw)
        own = self.own
        if own is None:
            from webdataset.gopen import gopen_schemes

            own = gopen_schemes["__default__"]
        return own(url, mode, bufsize, **kw)

    def __repr__(self) -> str:
        return f"ShardURLRouter({self.opener!r}, own={getattr(self.own, '__name__', self.own)!r})"


def _tell_once(url: str) -> None:
    scheme = urlsplit(str(url)).scheme.lower()
    with _told_lock:
        if scheme in _told:
            return
        _told.add(scheme)
    logger.info("%s:// shard URLs made by ais_wds.shard_urls open through AIS (ais_wds), not webdataset's "
                "own %s:// handler (first: %s)", scheme, scheme, url)


def register(client: Union[Client, str, None] = None, schemes: Optional[Iterable[str]] = None) -> AISOpener:
    """Install ais_wds's opener in webdataset's ``gopen_schemes`` for ``ais`` and the routed cloud schemes
    (idempotent; see :func:`routed_schemes`), and its fetcher in wids' download handlers, now if wids is
    loaded, else when it is (:func:`ais_wds.streaming.wids.register_wids`).

    Args:
        client: the Client all gopen calls use (default: from the environment, per process).
        schemes: cloud schemes to route through AIS besides ``ais`` (default: from ``AIS_WDS_ROUTE``).

    Returns:
        The registered opener.

    Raises:
        ConfigError: an unknown scheme.
    """
    from webdataset.gopen import gopen_schemes

    opener = AISOpener(client)
    names = routed_schemes(schemes)
    for scheme in SCHEME_TO_PROVIDER:
        current = gopen_schemes.get(scheme)
        own = current.own if isinstance(current, ShardURLRouter) else \
            _own.get(scheme) if isinstance(current, AISOpener) else current
        if scheme in names:
            if own is not None:
                _own[scheme] = own
            gopen_schemes[scheme] = opener
        else:
            gopen_schemes[scheme] = ShardURLRouter(opener, own)
    logger.debug("registered ais_wds gopen handlers for %s", ", ".join(names))
    from .wids import register_wids  # it imports this module

    register_wids(client, schemes)
    return opener


def is_registered(scheme: str = "ais") -> bool:
    """True when webdataset's ``scheme`` goes through ais_wds in this process."""
    from webdataset.gopen import gopen_schemes

    return isinstance(gopen_schemes.get(scheme), AISOpener)


def worker_init_fn(worker_id: int) -> None:
    """A DataLoader ``worker_init_fn`` that makes sure the handlers are registered in the worker."""
    if not is_registered():
        register()


_WDS_GOPEN = "webdataset.gopen"


def _register_after_import(module: ModuleType) -> None:
    register()


def register_on_import() -> None:
    """Register now if ``webdataset.gopen`` is loaded, else as soon as it is imported (idempotent).

    This is what ``import ais_wds`` does, so that importing ais_wds never imports webdataset (or torch),
    yet ``wds.WebDataset("ais://...")`` works whichever of the two the script imports first; the same
    for wids (:func:`ais_wds.streaming.wids.register_on_import`).
    """
    from . import wids  # it imports this module

    wids.register_on_import()
    call_after_import(_WDS_GOPEN, _register_after_import)
