"""ais_wds's fetcher in wids' download handlers: ``ais://`` shards in plain ``wids.ShardListDataset``.

wids (the indexed WebDataset, ``pip install wids``) copies each shard of a dataset into its cache
directory before reading it with mmap, and picks the copier by URL scheme from one table,
``wids.wids_dl.default_cmds`` (``file``, ``pipe:``, http(s) through ``curl``, ``gs`` through ``gsutil``,
``s3`` through ``aws``); ``ais`` is not in it. Importing ``ais_wds`` calls :func:`register_on_import`:
as soon as wids is loaded (now, or whenever it is imported later: this module imports neither wids nor
torch), :func:`register_wids` puts a :class:`WidsFetcher` in that table for ``ais`` and the cloud
schemes routed through AIS. Then::

    import ais_wds, wids
    ds = wids.ShardListDataset("ais://bucket/train.wids.json", cache_dir="/tmp/wids-cache")
    sample = ds[0]

The fetcher streams the object with ais_wds's resuming reader (:func:`ais_wds.open_object`) into a
temporary file beside wids' cache name and renames it into place, so a failed copy leaves nothing that
wids would take for a cached shard (the temporary file of a worker killed mid-copy is removed by the
next copy of that shard). A shard missing in AIS raises
:class:`~ais_wds.errors.ObjectNotFoundError` naming it. No external command (``ais``, ``curl``,
``gsutil``, ``aws``) is ever started.

Routing is the rule of the webdataset opener (:mod:`ais_wds.streaming.opener`): ``ais`` always; the
cloud schemes (``s3``, ``gs``, ``az``, ``oc`` and their aliases) only when routed through AIS by
``AIS_WDS_ROUTE=s3:gs`` (or webdataset's ``USE_AIS_FOR``), read at registration, or by
``ais_wds.register(schemes=[...])``; otherwise they stay wids' own.

Worker processes: under ``fork`` the table is inherited. Under ``spawn``/``forkserver`` a worker first
runs the script's imports (so ``import ais_wds`` at top level installs the hook), then imports wids while
unpickling the dataset, which registers the fetcher there; ``worker_init_fn=ais_wds.worker_init_fn``
does it too.

Compatibility: the table is checked before it is used (a dict keyed by URL scheme that is the default
``handlers`` of ``download_file_no_log``, ``download_file`` and ``download_and_open``, as in wids 0.1.11).
A wids whose table differs fails the registration, and with it ``import wids`` after ``import ais_wds``,
with a :class:`~ais_wds.errors.ConfigError` naming the wids version; ``AIS_WDS_WIDS=off`` leaves wids
alone.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import inspect
import logging
import os
import sys
import threading
from types import ModuleType
from typing import Any, Dict, Iterable, List, Optional, Tuple, Union

from .._core.after_import import call_after_import
from ..client import Client
from ..errors import ConfigError
from .opener import AISOpener, routed_schemes

logger = logging.getLogger(__name__)

SWITCH_ENV = "AIS_WDS_WIDS"
"""Environment variable: ``off`` (or ``0``) keeps ais_wds out of wids' handler table."""

TESTED_WIDS = "0.1.11"
_CHUNK = 1 << 20  # bytes per read/write while copying a shard
_PART_INFIX = ".ais_wds-"  # local + this + "<pid>-<thread>.part": a copy in progress
_HANDLER_USERS = ("download_file_no_log", "download_file", "download_and_open")
_WIDS_OWN_SCHEMES = ("file", "gs", "s3")  # keys wids' table has had since it split from webdataset

_settings: Dict[str, Any] = {"client": None, "schemes": None}
_replaced: Dict[str, Any] = {}  # scheme -> wids' own handler we replaced (restored when no longer routed)
_lock = threading.Lock()


class WidsFetcher:
    """A wids download handler, called by wids as ``handler(remote_url, local_path)``.

    Args:
        client: the :class:`Client` to use; None builds one from the environment on first use in each
            process.
    """

    def __init__(self, client: Union[Client, str, None] = None):
        self._opener = AISOpener(client)

    @property
    def client(self) -> Client:
        return self._opener.client

    def __call__(self, remote: str, local: str) -> None:
        """Copy the object at ``remote`` to the file ``local`` (all of it, or nothing at ``local``).

        Raises:
            ObjectNotFoundError / BucketNotFoundError: not in AIS (names the URL).
            ReadError, ConnectError, AuthError: from the resuming reader, after its retries.
        """
        _remove_stale_parts(local)
        tmp = f"{local}{_PART_INFIX}{os.getpid()}-{threading.get_ident()}.part"
        copied = 0
        try:
            with self._opener(remote, "rb") as src, open(tmp, "wb") as dst:
                buf = bytearray(_CHUNK)
                view = memoryview(buf)
                while True:
                    n = src.readinto(view)
                    if not n:
                        break
                    dst.write(view[:n])
                    copied += n
            os.replace(tmp, local)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        logger.debug("wids: copied %s (%d bytes) to %s", remote, copied, local)

    def __repr__(self) -> str:
        return f"WidsFetcher({self._opener!r})"


def _remove_stale_parts(local: str) -> None:
    """Delete the temporary files that copies of ``local`` left when their process was killed mid-copy
    (a DataLoader worker terminated by its loader). wids holds ``local``'s lock while it calls a
    handler, so no live copy of ``local`` is writing one now."""
    for path in glob.glob(glob.escape(local) + _PART_INFIX + "*.part"):
        with contextlib.suppress(OSError):
            os.unlink(path)
            logger.debug("wids: removed %s, left by a copy that did not finish", path)


def _wids_version() -> str:
    """The loaded wids' ``__version__``, else its distribution's version, else ``unknown``."""
    version = getattr(sys.modules.get("wids"), "__version__", None)
    if version:
        return str(version)
    try:
        from importlib.metadata import version as dist_version

        return dist_version("wids")
    except Exception:  # noqa: BLE001 - no metadata: say so rather than fail while reporting a failure
        return "unknown"


def handler_table() -> Dict[str, Any]:
    """wids' download handler table (``wids.wids_dl.default_cmds``), after checking that it is the one
    wids uses (imports wids).

    Raises:
        ConfigError: this wids fetches shards another way (names its version).
    """
    problem, table = _inspect_table()
    if problem:
        raise ConfigError(
            f"wids {_wids_version()}: {problem}; ais_wds cannot put its ais:// fetcher there "
            f"(it hooks wids.wids_dl.default_cmds as in wids {TESTED_WIDS})",
            hint=f"pip install 'wids=={TESTED_WIDS}', or upgrade ais_wds; "
                 f"{SWITCH_ENV}=off leaves wids alone (then wids cannot fetch ais:// shards)")
    return table


def _inspect_table() -> Tuple[str, Dict[str, Any]]:
    """``("", table)`` when wids' table is what ais_wds hooks, else ``(what differs, {})``."""
    try:
        dl = importlib.import_module("wids.wids_dl")
    except ImportError as e:
        return f"it has no module wids.wids_dl ({e})", {}
    table = getattr(dl, "default_cmds", None)
    if not isinstance(table, dict):
        return "wids.wids_dl.default_cmds is missing or not a dict", {}
    missing = [k for k in _WIDS_OWN_SCHEMES if k not in table]
    if missing:
        return f"wids.wids_dl.default_cmds is not keyed by URL scheme (no {missing[0]!r})", {}
    for name in _HANDLER_USERS:
        fn = getattr(dl, name, None)
        try:
            default = inspect.signature(fn).parameters["handlers"].default  # type: ignore[arg-type]
        except (TypeError, ValueError, KeyError):
            return f"wids.wids_dl.{name} is missing or takes no `handlers`", {}
        if default is not table:
            return f"wids.wids_dl.{name} does not fetch through wids.wids_dl.default_cmds", {}
    return "", table


def register_wids(client: Union[Client, str, None] = None, schemes: Optional[Iterable[str]] = None) -> None:
    """Put a :class:`WidsFetcher` in wids' handler table for ``ais`` and the routed cloud schemes, now if
    wids is loaded, else as soon as it is imported (idempotent; the latest call's settings win). Cloud
    schemes routed earlier but not now get wids' own handler back.

    Args:
        client: the Client the fetcher uses (default: from the environment, per process).
        schemes: cloud schemes to route through AIS besides ``ais`` (default: ``AIS_WDS_ROUTE``).

    Raises:
        ConfigError: an unknown scheme; or (when wids is loaded) a wids whose table differs.

    ``AIS_WDS_WIDS=off`` makes it a no-op.
    """
    names = routed_schemes(schemes)  # checks the schemes now, whether or not wids is loaded
    if _switched_off():
        return
    with _lock:
        _settings.update(client=client, schemes=None if schemes is None else list(schemes))
    if "wids" in sys.modules:
        _install(client, names)
    else:
        call_after_import("wids", _on_wids_import)


def register_on_import() -> None:
    """Register as soon as wids is loaded (now or later), with the settings of the latest
    :func:`register_wids` call (default: the environment); nothing when ``AIS_WDS_WIDS=off``.

    ``import ais_wds`` calls this; it never imports wids.
    """
    if not _switched_off():
        call_after_import("wids", _on_wids_import)


def _switched_off() -> bool:
    if os.environ.get(SWITCH_ENV, "").strip().lower() in ("off", "0", "false", "no"):
        logger.debug("%s=off: wids keeps its own handler table", SWITCH_ENV)
        return True
    return False


def is_registered(scheme: str = "ais") -> bool:
    """True when wids is loaded and fetches ``scheme`` URLs through ais_wds in this process."""
    dl = sys.modules.get("wids.wids_dl")
    table = getattr(dl, "default_cmds", None)
    return isinstance(table, dict) and isinstance(table.get(scheme), WidsFetcher)


def _on_wids_import(module: ModuleType) -> None:
    with _lock:
        client, schemes = _settings["client"], _settings["schemes"]
    _install(client, routed_schemes(schemes))


def _install(client: Union[Client, str, None], names: List[str]) -> None:
    table = handler_table()
    fetcher = WidsFetcher(client)
    with _lock:
        for scheme, handler in list(table.items()):
            if isinstance(handler, WidsFetcher) and scheme not in names:
                own = _replaced.pop(scheme, None)
                if own is None:
                    del table[scheme]
                else:
                    table[scheme] = own
        for scheme in names:
            current = table.get(scheme)
            if current is not None and not isinstance(current, WidsFetcher):
                _replaced[scheme] = current
            table[scheme] = fetcher
    logger.debug("registered ais_wds's wids fetcher for %s", ", ".join(names))
