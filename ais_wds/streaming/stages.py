"""webdataset pipeline stages over ais_wds's tar walk: drop-ins for webdataset's tar expansion.

* :func:`tar_samples`: a drop-in for ``webdataset.tarfile_samples``;
* :data:`tarfile_to_samples`: the pipeline stage, a drop-in for ``webdataset.tarfile_to_samples``.

The walk itself (:mod:`ais_wds.tar.reader`) imports neither webdataset nor torch; this module is where
it meets webdataset (``gopen`` for sources without a stream, ``pipelinefilter`` for the stage).
"""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterable, Iterator, Optional

from webdataset.filters import pipelinefilter
from webdataset.gopen import gopen

from ..tar.names import base_plus_ext
from ..tar.reader import (
    DEFAULT_BUFSIZE,
    Handler,
    close_quietly,
    group_by_keys,
    group_members,
    iter_member_spans,
    iter_members,
    member_filter,
    reraise,
    walk,
)

__all__ = ["DEFAULT_BUFSIZE", "group_by_keys", "iter_member_spans", "iter_members", "tar_samples",
           "tarfile_to_samples"]


def tar_samples(
    src: Iterable[Dict[str, Any]],
    handler: Handler = reraise,
    select_files: Optional[Callable[[str], bool]] = None,
    rename_files: Optional[Callable[[str], str]] = None,
    *,
    bufsize: int = DEFAULT_BUFSIZE,
) -> Iterator[Dict[str, Any]]:
    """Turn shards into samples: a drop-in for ``webdataset.tarfile_samples``.

    For each source dict, uses its ``"stream"`` if it has one (as ``webdataset.url_opener``
    produces) or opens ``"url"`` with ``webdataset.gopen`` otherwise, then yields the shard's
    samples, keyed and grouped like webdataset (``__key__``, ``__url__``, and ``__local_path__``
    when the source has ``"local_path"``). Members named like ``__meta__`` are skipped, as
    webdataset does. Each stream is closed once the shard is done, failed or abandoned (errors
    from ``close()`` are ignored).

    Handler semantics are webdataset's. An exception while opening a URL gets ``(url,)``
    appended to its ``args``; one while reading a shard (e.g. :class:`TarFormatError`) gets
    ``(stream, url)``. ``handler(exn)`` returning True moves on to the next shard, False stops the
    whole iteration; the default re-raises. The sample being assembled when a shard fails is
    dropped. Exceptions from ``rename_files`` / ``select_files`` get ``" @ <stream>"`` appended to
    their message; True skips the member, False ends the shard normally. A duplicate suffix in a
    sample raises ``ValueError``; True skips the member, False stops the whole iteration.

    Args:
        src: an iterable of dicts with ``"url"`` and optionally ``"stream"`` / ``"local_path"``.
        handler: exception handler, e.g. ``webdataset.warn_and_continue``.
        select_files: keep only members whose (renamed) name it accepts; the data of the others
            is skipped without being kept in memory.
        rename_files: maps a member name to the name used for keys.
        bufsize: read-buffer size per stream.

    Returns:
        A generator of sample dicts.

    Raises:
        Exception: whatever ``handler`` raises (by default, the exception itself, e.g. TarFormatError).

    Thread safety: the generator belongs to one thread at a time.
    """
    # Like webdataset, an exception that grouping's handler re-raised is not handled again.
    handled: list = [None]

    def group_handler(exn: Exception) -> bool:
        handled[0] = exn
        return handler(exn)

    for source in src:
        url = source["url"]
        stream = source.get("stream")
        if stream is None:
            try:
                stream = gopen(url)
            except Exception as exn:  # noqa: BLE001 - webdataset's handler decides, as in its url_opener
                exn.args = exn.args + (url,)
                if handler(exn):
                    continue
                break
        try:
            members = walk(stream, bufsize, url, True, member_filter(handler, select_files, rename_files, stream))
            stopped = yield from group_members(
                members, url, source.get("local_path"), base_plus_ext, True, None, group_handler
            )
        except Exception as exn:
            if exn is handled[0]:
                raise
            exn.args = exn.args + (stream, url)
            handled[0] = None
            if handler(exn):
                continue
            break
        finally:
            close_quietly(stream)
        if stopped:
            break



#: ``tarfile_to_samples(handler=..., select_files=..., rename_files=...)`` is a pipeline stage,
#: e.g. ``wds.DataPipeline(wds.SimpleShardList(urls), wds.split_by_worker, tarfile_to_samples(),
#: wds.decode(), ...)``: a drop-in for ``webdataset.tarfile_to_samples``.
tarfile_to_samples = pipelinefilter(tar_samples)
