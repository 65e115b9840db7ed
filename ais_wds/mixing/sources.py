"""The sources a mix reads, seen through one small interface whatever front end they are.

A source is an :class:`ais_wds.WebDataset` (with its own decode / map stages; no ``.batched``) or an
:class:`ais_wds.AISIterDataset`. Each keeps its own split over ranks and DataLoader workers and its own
state; the mix steers which epoch of it a worker reads by loading a part state of that epoch (the
source's own ``load_state_dict``), so a source's epochs inside a mix depend on the mix's position only,
never on timing or on the other workers.

Process safety: a :class:`Source` pickles with its dataset (fork, spawn and forkserver workers).
"""

from __future__ import annotations

from typing import Any, Dict, Iterator, Optional, Tuple

from ..datasets.iterable import AISIterDataset
from ..errors import ConfigError
from ..streaming.pipeline import WebDataset, batched_now
from .state import without_owed

SOURCE_EPOCHS = 1 << 20
"""Epochs of a source one epoch of a mix may start (per worker): epoch e of a mix starts its sources'
epoch ``e * SOURCE_EPOCHS``, the next ``+ 1``, ... so two epochs of the mix never share a source epoch."""


class Source:
    """One source of a mix: its dataset, its number in the mix and a name for messages.

    Raises:
        ConfigError: not a WebDataset / AISIterDataset, a WebDataset that batches or has a
            ``.with_epoch`` / ``.repeat`` window, or a source known to hold no sample.
    """

    def __init__(self, dataset: Any, number: int):
        self.dataset = dataset
        self.number = number
        self.name = f"source {number} ({describe(dataset)})"
        if not isinstance(dataset, (WebDataset, AISIterDataset)):
            raise ConfigError(f"{self.name}: a mix reads ais_wds.WebDataset and ais_wds.AISIterDataset sources",
                              hint="wrap the data in one of them")
        if isinstance(dataset, WebDataset):
            if dataset.nsamples > 0 or dataset.repetitions != 1:
                raise ConfigError(f"{self.name}: .with_epoch() / .repeat() on a mixed source",
                                  hint="set the epoch on the mix (stop=) instead")
            if any(getattr(stage, "f", None) is batched_now or getattr(getattr(stage, "f", None), "__name__", "")
                   == "_batched" for stage in dataset.pipeline[1:]):
                raise ConfigError(f"{self.name}: a mixed source must yield samples, not batches",
                                  hint="drop .batched() from the source; use Mix(batch_size=...)")
        if self.samples() == 0:
            raise ConfigError(f"{self.name} is empty: it holds no sample to mix",
                              hint="check the source's prefix or index, or leave it out of the mix")

    def rank_world(self) -> Tuple[int, int]:
        """The (rank, world size) the source was built for."""
        ds = self.dataset
        if isinstance(ds, WebDataset):
            return ds.shards.epochs.rank, ds.shards.epochs.world_size
        return ds.rank, ds.world_size

    def samples(self) -> Optional[int]:
        """Samples (objects) in a whole epoch of the source over the job, None when unknown (shards
        without an index)."""
        ds = self.dataset
        if isinstance(ds, WebDataset):
            counts = ds.shards.counts
            return sum(counts.counts) if counts is not None else None
        return len(ds.listing)

    def state(self) -> Dict[str, Any]:
        """The source's own state in this process (its part of its current epoch)."""
        return dict(self.dataset.state_dict())

    def start(self, state: Dict[str, Any]) -> Iterator[Any]:
        """Load a part or job state of the source and begin its pass now (this process's part of it)."""
        self.dataset.load_state_dict(state)
        return iter(self.dataset)

    def fresh(self, epoch: int) -> Dict[str, Any]:
        """The part state of this process at the start of the source's ``epoch`` (nothing consumed, nothing
        held: a shuffle's buffered samples, open shards and generators belong to the pass they were in)."""
        state = without_owed(self.state())
        state.update(epoch=int(epoch), layers=[], progress=[0, 0])
        if "window" in state:
            state["window"] = 0
        return state


def describe(dataset: Any) -> str:
    """A short name of a dataset for messages: its kind and where it reads (no credentials: URLs only)."""
    if isinstance(dataset, WebDataset):
        urls = dataset.urls
        more = f" and {len(urls) - 1} more shards" if len(urls) > 1 else ""
        return f"ais_wds.WebDataset over {urls[0] if urls else '?'}{more}"
    if isinstance(dataset, AISIterDataset):
        listing = dataset.listing
        return f"AISIterDataset over {listing[0][0] if len(listing) else 'an empty listing'}" + \
            (f" and {len(listing) - 1} more objects" if len(listing) > 1 else "")
    return type(dataset).__name__
