"""The 0.1 import path of the object reader, kept: the code is in :mod:`ais_wds.objects.reader`.

New code imports these names from ``ais_wds`` (``ais_wds.open_object``, ...) or from
``ais_wds.objects.reader``.
"""

from .objects.reader import DEFAULT_BUFSIZE, ResumingObjectRaw, open_object, read_bytes, read_member, read_range

__all__ = ["DEFAULT_BUFSIZE", "ResumingObjectRaw", "open_object", "read_bytes", "read_member", "read_range"]
