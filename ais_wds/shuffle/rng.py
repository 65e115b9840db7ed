"""A seeded pseudo-random generator whose whole state is one 64-bit integer (SplitMix64).

A shuffle that must resume exactly saves its generator with its position; ``random.Random``'s state is
625 integers (about 2.5 KB pickled), SplitMix64's is one. SplitMix64 (Steele, Lea, Flood 2014; the
seeder of xoshiro) passes BigCrush; :meth:`SplitMix64.below` maps an output to ``[0, m)`` by Lemire's
multiply-shift, whose bias (below ``m / 2**64``) is far under anything a shuffle could show.

Pure computation; a generator belongs to one thread.
"""

from __future__ import annotations

import hashlib

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


class SplitMix64:
    """SplitMix64: ``state`` is everything (an int in ``[0, 2**64)``); equal states give equal draws."""

    __slots__ = ("state",)

    def __init__(self, state: int):
        self.state = int(state) & MASK

    @classmethod
    def seeded(cls, *parts: object) -> SplitMix64:
        """A generator started from a hash of ``parts`` (e.g. seed, epoch, part number): the same parts
        give the same draws in every process and Python version."""
        digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
        return cls(int.from_bytes(digest, "little"))

    def next64(self) -> int:
        """The next 64-bit output."""
        self.state = z = (self.state + GOLDEN) & MASK
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, m: int) -> int:
        """A draw in ``[0, m)`` (``m >= 1``)."""
        return (self.next64() * m) >> 64
