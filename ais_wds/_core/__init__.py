"""Private machinery of the core (never imported by users; no torch, no webdataset).

* ``process_local``: the one fork-safety rule (per-process values rebuilt after ``fork``).
* ``retry``: the retry budget, what counts as transient, and SDK-exception translation.
* ``fetch``: whole-object getters (direct-to-target GET, batch GET) and batched ranged reads.
* ``prefetch``: the bounded read-ahead engine that drives the getters from threads.
* ``dist``: torch.distributed / DataLoader-worker facts, asked only when torch is already loaded.
"""
