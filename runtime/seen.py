"""Keys seen so far, in bounded memory: how a people file of any size is
checked for a person listed twice.

Up to :data:`SPILL` keys live in a Python set (fastest). Past it they move to
an open-addressing hash table packed in an ``array`` of 64-bit words, two per
key: 16 bytes a key instead of about 90 for a ``bytes`` object in a set, so
memory stays within twice its size from ten thousand people to millions.
Keys are digests (16 bytes, evenly spread), which is what makes their own
bits a good hash.
"""

from __future__ import annotations

from array import array

SPILL = 100_000  # keys kept in a set before they move to the packed table
_LOAD = 0.6  # the packed table grows past this share of slots in use


class Seen:
    """A set of 16-byte digests that stays small in memory."""

    def __init__(self, spill: int = SPILL) -> None:
        self.spill = spill
        self._set: set[bytes] | None = set()
        self._slots = 0
        self._table = array("Q")
        self._count = 0

    def add(self, key: bytes) -> bool:
        """Remember ``key``; ``False`` when it was already there."""
        if self._set is not None:
            if key in self._set:
                return False
            self._set.add(key)
            if len(self._set) >= self.spill:
                self._pack(self._set)
            return True
        high, low = _words(key)
        slot = self._find(high, low)
        if self._table[2 * slot]:
            return False
        self._table[2 * slot], self._table[2 * slot + 1] = high, low
        self._count += 1
        if self._count > self._slots * _LOAD:
            self._grow(self._slots * 2)
        return True

    def __contains__(self, key: bytes) -> bool:
        if self._set is not None:
            return key in self._set
        return self._table[2 * self._find(*_words(key))] != 0

    def __len__(self) -> int:
        return len(self._set) if self._set is not None else self._count

    def _find(self, high: int, low: int) -> int:
        """The slot holding the key, or the empty slot where it would go."""
        table, mask = self._table, self._slots - 1
        slot = low & mask
        while True:
            found = table[2 * slot]
            if found == 0 or (found == high and table[2 * slot + 1] == low):
                return slot
            slot = (slot + 1) & mask  # linear probing: neighbours share cache lines

    def _pack(self, keys: set[bytes]) -> None:
        self._set = None
        self._grow(1 << max(4, (int(len(keys) / _LOAD * 2)).bit_length()))
        for key in keys:
            self.add(key)

    def _grow(self, slots: int) -> None:
        old = self._table
        self._slots, self._table, self._count = slots, array("Q", bytes(16 * slots)), 0
        for index in range(0, len(old), 2):
            if old[index]:
                slot = self._find(old[index], old[index + 1])
                self._table[2 * slot], self._table[2 * slot + 1] = old[index], old[index + 1]
                self._count += 1


def _words(key: bytes) -> tuple[int, int]:
    """A digest as two 64-bit words; the first never 0 (0 marks an empty slot:
    its lowest bit is set, which leaves 127 bits to tell keys apart)."""
    number = int.from_bytes(key[:16].ljust(16, b"\0"), "little")
    return (number >> 64) | 1, number & 0xFFFF_FFFF_FFFF_FFFF
