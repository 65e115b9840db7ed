"""What ``ais_wds.WebDataset(shuffle=...)`` accepts, checked once, with the error naming the value.

* ``True`` / ``"shards"``: the shard order is shuffled every epoch (the default);
* ``False`` / ``"none"``: storage order;
* ``"samples"``: every epoch a uniform random permutation of all samples of the job (needs ``index=``).

Pure logic.
"""

from __future__ import annotations

import enum
from typing import Any

from ..errors import ConfigError

SHUFFLE_MODES = (True, False, "shards", "samples", "none")


class ShuffleMode(enum.Enum):
    NONE = "none"
    SHARDS = "shards"
    SAMPLES = "samples"


def shuffle_mode(value: Any, *, has_index: bool) -> ShuffleMode:
    """The mode ``shuffle=value`` asks for.

    Raises:
        ConfigError: a value of another kind or an unknown string (naming it and the accepted ones), or
            ``"samples"`` without a shard index.
    """
    if value is True or value == "shards":
        return ShuffleMode.SHARDS
    if value is False or value == "none":
        return ShuffleMode.NONE
    if value == "samples" and isinstance(value, str):
        if not has_index:
            raise ConfigError("shuffle='samples' needs a shard index: it reads every sample at its own byte range",
                              hint="pass index= (the .index.msgpack that `ais-wds pack` writes, or make one with "
                                   "`ais-wds index PREFIX`), or use shuffle=True with .shuffle(n, open_shards=k)")
        return ShuffleMode.SAMPLES
    raise ConfigError(f"shuffle={value!r} is not one of {', '.join(repr(m) for m in SHUFFLE_MODES)}",
                      hint="True/'shards': shard order per epoch; 'samples': a global sample shuffle (needs "
                           "index=); False/'none': storage order")
