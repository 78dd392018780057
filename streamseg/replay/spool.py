"""Validated records parked on disk until they can be sent in event-time order.

A replay must sort by event time before it sends anything, and history files
can hold millions of rows. Keeping every encoded event in memory would cost
hundreds of bytes per row; the spool writes key and value to an unnamed
temporary file and keeps only 25 bytes per row in memory (event time, file
offset, key and value lengths, topic), so a few million rows stay well under
a hundred megabytes. Sending reads the records back in sorted order with
``pread``; the operating system's page cache does the rest.

>>> with Spool() as sp:
...     sp.add(30, 0, b"c1", b"late")
...     sp.add(10, 1, b"c2", b"early")
...     sp.add(30, 0, b"c1", b"tie, second in file")
...     [(ts, value) for ts, _, _, value in sp.in_time_order()]
[(10, b'early'), (30, b'late'), (30, b'tie, second in file')]
"""

from __future__ import annotations

import os
import tempfile
from array import array
from collections.abc import Iterator
from types import TracebackType

import numpy as np


class Spool:
    """Append-only records (ts, topic index, key, value) with a stable time order."""

    def __init__(self) -> None:
        self._file = tempfile.TemporaryFile(prefix="streamseg-replay-")
        self._size = 0
        self.ts = array("q")
        self._offset = array("q")
        self._key_len = array("i")
        self._value_len = array("i")
        self._topic = array("b")

    def __len__(self) -> int:
        return len(self.ts)

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def add(self, ts: int, topic: int, key: bytes, value: bytes) -> None:
        self._file.write(key)
        self._file.write(value)
        self.ts.append(ts)
        self._offset.append(self._size)
        self._key_len.append(len(key))
        self._value_len.append(len(value))
        self._topic.append(topic)
        self._size += len(key) + len(value)

    def in_time_order(self) -> Iterator[tuple[int, int, bytes, bytes]]:
        """(ts, topic, key, value) by event time; equal times keep the order they were added."""
        order = np.argsort(np.frombuffer(self.ts, dtype=np.int64), kind="stable")
        yield from self._read(int(i) for i in order)

    def in_added_order(self) -> Iterator[tuple[int, int, bytes, bytes]]:
        yield from self._read(iter(range(len(self))))

    def _read(self, indices: Iterator[int]) -> Iterator[tuple[int, int, bytes, bytes]]:
        # pread, not mmap: mapped pages would count as this process's memory
        self._file.flush()
        fd = self._file.fileno()
        for i in indices:
            k = self._key_len[i]
            blob = os.pread(fd, k + self._value_len[i], self._offset[i])
            yield self.ts[i], self._topic[i], blob[:k], blob[k:]

    def close(self) -> None:
        self._file.close()
