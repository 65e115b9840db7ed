"""Object-level datasets and pipes (the names of AIStore's earlier PyTorch plugin), on ais_wds's core.

* :class:`AISDataset`: map-style, ``ds[i] -> (url, bytes)``, batched ``__getitems__``.
* :class:`AISIterDataset`: iterable, split by rank and worker, seeded epoch shuffle, resumable.
* :class:`AISFileLister` / :class:`AISFileLoader` (alias ``...IterDataPipe``): prefix -> URLs -> streams.

See docs/datasets.md.
"""

from .iterable import AISIterDataset
from .map import AISDataset
from .pipes import AISFileLister, AISFileListerIterDataPipe, AISFileLoader, AISFileLoaderIterDataPipe
from .sampler import AISSampler

__all__ = ["AISDataset", "AISIterDataset", "AISSampler", "AISFileLister", "AISFileListerIterDataPipe", "AISFileLoader",
           "AISFileLoaderIterDataPipe"]
