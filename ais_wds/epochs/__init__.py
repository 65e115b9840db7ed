"""Epoch plans (the listing + epochs layer; pure logic, no I/O, no torch).

* ``plan``: which slots of an epoch each (rank, worker) part reads (contiguous, balanced runs), its
  progress, and same-shape and elastic resume. The one rank-splitting rule of ais_wds: every front end
  and :func:`ais_wds.partition.partition` use it.
* ``shuffle``: ``random.Random.shuffle`` bit for bit, fast for millions of entries.

The public face is :mod:`ais_wds.partition` (``Part``, ``epoch_order``, ``partition``, ``job_state``).
"""
