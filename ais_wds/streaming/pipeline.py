"""``ais_wds.WebDataset``: the ready pipeline for streaming tar shards from AIS, right by default.

Where plain ``wds.WebDataset`` bites, this one:

* splits shards by DDP rank and by DataLoader worker (no ``single_node_only`` error under WORLD_SIZE>1),
  every shard exactly once per epoch across all (rank, worker) parts;
* shuffles shards in a different order every epoch, deterministically from ``seed`` (same on every rank);
* lets a worker with no shard yield nothing (logged once) instead of raising;
* lists prefixes once per job (rank 0, shared over torch.distributed), never per worker;
* opens shards through the reader core directly (no gopen lookup, so spawn workers need nothing
  registered) and expands them with ais_wds's fast tar path (:mod:`ais_wds.streaming.stages`).

It is a ``wds.DataPipeline`` with webdataset's fluid methods (``.shuffle``, ``.decode``, ``.to_tuple``,
``.map``, ``.batched``, ``.with_epoch`` ...), so code written for ``wds.WebDataset`` keeps working.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

import webdataset as wds
from torch.utils.data import IterableDataset
from webdataset.handlers import reraise_exception

from ..client import Client
from ..listing import Listing
from ..partition import current_part, epoch_order, partition
from ..reader import open_object
from . import stages
from .shards import DEFAULT_SHARD_SUFFIXES, shard_urls

logger = logging.getLogger(__name__)

Handler = Callable[[BaseException], bool]

SHARD_BUFSIZE = 256 << 10
"""Read-ahead buffer of each shard stream. Members larger than it are read straight into their own
bytes (one copy); measured at 1 MiB samples: 2,113 MB/s with 256 KiB vs 1,849 with 1 MiB, equal at 1 KiB."""


class ShardSource(IterableDataset):
    """Yields ``{"url": shard_url}`` for this process's part of the shards, epoch by epoch.

    Args:
        urls: all shard URLs of the job (the same list on every rank).
        shuffle: shuffle shard order per epoch from ``seed``.
        seed: shuffle seed; the order depends only on (seed, epoch).
        even: None, ``"drop"`` or ``"repeat"``: equal shard counts per rank (see ``ais_wds.partition``).
        resampled: sample shards with replacement forever (like ``wds.ResampledShards``), seeded per
            (seed, epoch, rank, worker).

    The epoch advances by one after each complete pass in this process; with non-persistent
    DataLoader workers call :meth:`set_epoch` every epoch (as with ``DistributedSampler``).
    """

    def __init__(self, urls: Sequence[str], *, shuffle: bool = True, seed: int = 0, even: Optional[str] = None,
                 resampled: bool = False):
        super().__init__()
        self.urls = list(urls)
        self.shuffle = shuffle
        self.seed = seed
        self.even = even
        self.resampled = resampled
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def state_dict(self) -> Dict[str, Any]:
        return {"epoch": self.epoch, "seed": self.seed}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.epoch = int(state["epoch"])
        self.seed = state.get("seed", self.seed)

    def __len__(self) -> int:
        return len(self.urls)

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        part = current_part()
        if self.resampled:
            rng = random.Random(f"ais_wds:resampled:{self.seed}:{self.epoch}:{part.index}")
            while True:
                yield {"url": rng.choice(self.urls)}
        order = epoch_order(len(self.urls), seed=self.seed if self.shuffle else None, epoch=self.epoch)
        mine = partition(order, part, even=self.even)
        if not mine:
            logger.warning("rank %d worker %d has no shard (%d shards for %d parts); it yields nothing",
                           part.rank, part.worker, len(self.urls), part.count)
        for i in mine:
            yield {"url": self.urls[i]}
        self.epoch += 1


def open_shards(src: Iterable[Dict[str, Any]], *, client: Client,
                handler: Handler = reraise_exception) -> Iterator[Dict[str, Any]]:
    """Pipeline stage: ``{"url"}`` -> ``{"url", "stream"}`` through the reader core (lazy: the GET
    happens on the first read, so errors surface in the tar stage, under the same handler)."""
    for sample in src:
        url = sample["url"]
        try:
            yield {**sample, "stream": open_object(url, client, bufsize=SHARD_BUFSIZE)}
        except Exception as e:  # noqa: BLE001 - delegated to the webdataset handler
            e.args = e.args + (url,)
            if handler(e):
                continue
            break


class WebDataset(wds.DataPipeline, wds.FluidInterface):
    """Stream tar shards from AIS as webdataset samples (dicts with ``__key__``, ``__url__`` and one
    entry per file extension).

    Args:
        source: prefix URL(s) to list (``"ais://bucket/train/"``), shard URL patterns
            (``"ais://bucket/train-{000000..000099}.tar"``), a Listing or a saved ``.msgpack`` listing,
            or a list of any of these.
        client: Client or endpoint; default from the environment.
        shuffle: shuffle the shard order every epoch (deterministic from ``seed``).
        seed: the shard shuffle seed, shared by all ranks.
        even: equal shard counts per rank: None, ``"drop"`` or ``"repeat"``.
        resampled: draw shards with replacement forever (combine with ``.with_epoch(n)``).
        handler: webdataset exception handler (``wds.warn_and_continue`` to skip bad shards).
        select_files, rename_files: as in ``wds.WebDataset``.
        suffixes: which listed objects are shards.

    Raises:
        EmptyListingError: no shard found under ``source`` (at construction, never a silent empty epoch).
    """

    def __init__(
        self,
        source: Union[str, Listing, Sequence[Union[str, Listing]]],
        *,
        client: Union[Client, str, None] = None,
        shuffle: bool = True,
        seed: int = 0,
        even: Optional[str] = None,
        resampled: bool = False,
        handler: Handler = reraise_exception,
        select_files: Optional[Callable[[str], bool]] = None,
        rename_files: Optional[Callable[[str], str]] = None,
        suffixes: Iterable[str] = DEFAULT_SHARD_SUFFIXES,
    ):
        self.client = Client.of(client)
        urls: Sequence[str] = shard_urls(source, suffixes=suffixes, client=self.client)
        self.shards = ShardSource(urls, shuffle=shuffle, seed=seed, even=even, resampled=resampled)
        super().__init__(
            self.shards,
            wds.pipelinefilter(open_shards)(client=self.client, handler=handler),
            stages.tarfile_to_samples(handler=handler, select_files=select_files, rename_files=rename_files),
        )

    @property
    def urls(self) -> List[str]:
        """All shard URLs of the job."""
        return self.shards.urls

    def set_epoch(self, epoch: int) -> None:
        """Set the epoch that decides the shard order (call before each epoch with non-persistent workers)."""
        self.shards.set_epoch(epoch)

    def state_dict(self) -> Dict[str, Any]:
        return self.shards.state_dict()

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.shards.load_state_dict(state)
