"""Shuffle algorithms, chosen by name, one module each (pure logic: no I/O, no torch, no webdataset).

* :mod:`~ais_wds.shuffle.rng`: a seeded generator whose whole state is one 64-bit integer (it goes into
  the state_dict);
* :mod:`~ais_wds.shuffle.refs`: a sample as a reference (shard number, sample number in the shard)
  packed into one integer, never its bytes;
* :mod:`~ais_wds.shuffle.buffer`: the shuffle buffer of ``.shuffle(n)``: webdataset's algorithm, with a
  reference per buffered sample so that a checkpoint can name what the buffer held;
* :mod:`~ais_wds.shuffle.global_samples`: ``shuffle="samples"``: a uniform random permutation of every
  sample of the job per epoch, and where each sample lies (needs a shard index);
* :mod:`~ais_wds.shuffle.k_shards`: k shards read at once, each sample drawn from a random open shard;
* :mod:`~ais_wds.shuffle.modes`: what ``shuffle=`` accepts.

The pipeline wiring (reading, refilling a buffer on resume) is in :mod:`ais_wds.streaming`.
"""

from .buffer import ShuffleBuffer
from .modes import SHUFFLE_MODES, ShuffleMode, shuffle_mode
from .refs import pack_ref, unpack_ref
from .rng import SplitMix64

__all__ = ["SHUFFLE_MODES", "ShuffleBuffer", "ShuffleMode", "SplitMix64", "pack_ref", "shuffle_mode", "unpack_ref"]
