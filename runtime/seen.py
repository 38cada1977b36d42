"""Keys seen so far, in bounded memory: how a people file of any size is
checked for a person listed twice.

Up to :data:`SPILL` keys live in a Python set (fastest, exact for 16-byte
digests). Past it they move to an open-addressing hash table packed in an
``array`` of 64-bit words, a key's first 8 bytes each: 8 bytes a key instead
of about 90 for a ``bytes`` object in a set, so memory stays within twice
its size from ten thousand people to millions. Two different addresses then
look alike with a chance of about n²/2⁶⁴ — one in 18 million for a file of a
million people — and the second would be reported as listed twice, never
silently merged. Keys are digests (evenly spread): their own bits are a good
hash.
"""

from __future__ import annotations

from array import array

SPILL = 100_000  # keys kept in a set before they move to the packed table
_LOAD = 0.6  # the packed table grows past this share of slots in use


class Seen:
    """A set of digests (8 bytes or more) that stays small in memory."""

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
        word = _word(key)
        slot = self._find(word)
        if self._table[slot]:
            return False
        self._table[slot] = word
        self._count += 1
        if self._count > self._slots * _LOAD:
            self._grow(self._slots * 2)
        return True

    def __contains__(self, key: bytes) -> bool:
        if self._set is not None:
            return key in self._set
        return self._table[self._find(_word(key))] != 0

    def __len__(self) -> int:
        return len(self._set) if self._set is not None else self._count

    def _find(self, word: int) -> int:
        """The slot holding ``word``, or the empty slot where it would go."""
        table, mask = self._table, self._slots - 1
        slot = word & mask
        while True:
            found = table[slot]
            if found == 0 or found == word:
                return slot
            slot = (slot + 1) & mask  # linear probing: neighbours share cache lines

    def _pack(self, keys: set[bytes]) -> None:
        self._set = None
        self._grow(1 << max(4, int(len(keys) / _LOAD * 2).bit_length()))
        for key in keys:
            self.add(key)

    def _grow(self, slots: int) -> None:
        old = self._table
        self._slots, self._table, self._count = slots, array("Q", bytes(8 * slots)), 0
        for word in old:
            if word:
                self._table[self._find(word)] = word
                self._count += 1


def _word(key: bytes) -> int:
    """A digest's first 8 bytes as a word, never 0 (0 marks an empty slot:
    the lowest bit is set, which leaves 63 bits to tell keys apart)."""
    return int.from_bytes(key[:8].ljust(8, b"\0"), "little") | 1
