"""Private machinery of the core (never imported by users; no torch, no webdataset).

* ``process_local``: the one fork-safety rule (per-process values rebuilt after ``fork``).
* ``connections``: one process's HTTP stack for one cluster (SDK client, session, direct-GET pool,
  cluster map), owned by :class:`ais_wds.Client`.
* ``retry``: the retry budget, what counts as transient, and SDK-exception translation;
  ``sdk_errors``: typed errors that are also the SDK's exceptions.
* ``fetch``: whole-object getters (direct and batch GET) and batched ranged reads;
  ``prefetch``: the bounded read-ahead engine that drives them from threads.
* ``epochs``: epoch plans (who reads which slots, progress, same-shape and elastic resume);
  ``shuffle``: ``random.Random.shuffle`` bit for bit, fast for millions of entries.
* ``archive``: AIS-built archives as core calls (the cluster pack engine): the archive job, get-batch of
  a shard's objects in order, prefetch of cloud objects, placement checks.
* ``dist``: torch.distributed / DataLoader-worker facts, asked only when torch is already loaded.
"""
