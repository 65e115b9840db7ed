"""Reading and writing objects: one object, or a batch of them (the objects layer; no torch, no webdataset).

* ``reader``: an object as a resuming, buffered read stream; ``read_bytes`` / ``read_range`` / ``read_member``.
* ``writer``: an object written from a stream, all or nothing (single PUT or multipart upload).
* ``fetch``: whole-object getters (direct-to-target GET, AIS batch GET) and batched ranged reads;
  ``prefetch``: the bounded fetch-ahead engine that drives a getter from threads.
* ``get_batch``: AIS's get-batch job as one tar stream, and a fast reader of its reply.
* ``jobs``: AIS jobs on many objects (archive, prefetch) and the placement checks around them.

Connections, retries and typed errors come from the transport layer below (``ais_wds._core``,
``ais_wds.client``); nothing here knows listings, epochs or archive formats (a batch GET's tar
reply is split by a walk the caller hands in).
"""
