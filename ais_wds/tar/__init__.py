"""The tar format, read and written, without webdataset or torch.

* :mod:`ais_wds.tar.reader`: a fast streaming header walk (``iter_members``, ``iter_member_spans``,
  ``group_by_keys``);
* :mod:`ais_wds.tar.writer`: ustar/pax member headers for writers that stream their own bytes;
* :mod:`ais_wds.tar.names`: webdataset's naming rules (sample keys, ``__meta__`` members, shard stems).

The webdataset pipeline stages built on the reader live in :mod:`ais_wds.streaming.stages`.
"""

from .names import base_plus_ext, is_meta_member, shard_stem
from .reader import DEFAULT_BUFSIZE, group_by_keys, iter_member_spans, iter_members

__all__ = ["DEFAULT_BUFSIZE", "base_plus_ext", "group_by_keys", "is_meta_member", "iter_member_spans",
           "iter_members", "shard_stem"]
