"""The transport layer's private machinery (never imported by users; no torch, no webdataset).

* ``process_local``: the one fork-safety rule (per-process values rebuilt after ``fork``).
* ``connections``: one process's HTTP stack for one cluster (SDK client, session, direct-GET pool,
  cluster map), built from a :class:`~ais_wds.config.ClientConfig` and owned by :class:`ais_wds.Client`.
* ``retry``: the retry budget, what counts as transient, and SDK-exception translation;
  ``sdk_errors``: typed errors that are also the SDK's exceptions.
* ``dist``: torch.distributed / DataLoader-worker facts, asked only when torch is already loaded.

Nothing here knows objects, readers, listings or epochs: those are layers above (``ais_wds.objects``,
``ais_wds.listing``, ``ais_wds.epochs``).
"""
