"""The 0.1 import path of the object writer, kept: the code is in :mod:`ais_wds.objects.writer`.

New code imports these names from ``ais_wds`` (``ais_wds.open_writer``, ...) or from
``ais_wds.objects.writer``.
"""

from .objects.writer import DEFAULT_PART_SIZE, ObjectWriter, delete_object, open_writer, write_bytes

__all__ = ["DEFAULT_PART_SIZE", "ObjectWriter", "delete_object", "open_writer", "write_bytes"]
