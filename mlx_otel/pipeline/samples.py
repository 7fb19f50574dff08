"""Per-sample values buffered on the training thread and folded into histograms in bulk.

Recording a histogram sample costs a microsecond or more through an SDK; a
step of 64 rewards would cost more than the rest of the step. The training
thread appends each step's samples to a bounded buffer here (a tuple or an
array, a few hundred nanoseconds), and :meth:`SampleBuffers.fold` records
them with NumPy before each scrape and on the background worker. The samples
stay exact: a full buffer is folded in part on the training thread rather
than dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import numpy as np

from mlx_otel.errors import ErrorLedger
from mlx_otel.records import to_numbers

__all__ = ["SampleBuffers"]

#: Samples folded into a histogram in one piece (about a millisecond of NumPy)
#: before the interpreter is yielded to the training thread.
_FOLD_CHUNK = 1 << 16


class SampleBuffers:
    """The rewards and step durations of steps not folded yet, and their folding.

    ``max_samples`` bounds each buffer in steps; non-finite samples and
    samples that are not numbers are left out of the histograms and counted
    in the ledger.
    """

    def __init__(self, *, ledger: ErrorLedger, max_samples: int) -> None:
        self._ledger = ledger
        self._max_samples = max_samples
        #: Per-step reward chunks (tuples of floats or float arrays).
        self.rewards: deque[Any] = deque()
        #: Step durations in seconds.
        self.durations: deque[float] = deque()
        self._fold_lock = threading.Lock()
        self._record_reward: Callable[[np.ndarray], None] | None = None
        self._record_duration: Callable[[np.ndarray], None] | None = None

    def fold_into(
        self, rewards: Callable[[np.ndarray], None], durations: Callable[[np.ndarray], None]
    ) -> None:
        """Where :meth:`fold` records rewards and durations (finite float64 arrays)."""
        self._record_reward = rewards
        self._record_duration = durations

    def add(self, buffer: deque[Any], item: Any, task: str) -> None:
        """Append one step's samples to ``buffer`` (:attr:`rewards` or :attr:`durations`)."""
        # Histogram samples must stay exact: a full buffer is first folded in
        # part. When the worker holds the fold lock (it may be waiting for the
        # interpreter in the middle of a piece), the buffer may grow to twice
        # its bound; beyond that the new sample is dropped and counted. Only a
        # holder of the fold lock pops these buffers.
        size = len(buffer)
        full = size >= self._max_samples and not self._fold_inline()
        if full and size >= 2 * self._max_samples:
            self._ledger.drop(task)
            return
        buffer.append(item)

    def fold(self) -> None:
        """Fold buffered samples into the histograms, in bounded NumPy pieces."""
        if self._record_reward is None or self._record_duration is None:
            return
        with self._fold_lock:
            self._fold_durations()
        left = len(self.rewards)  # what is buffered now; later samples wait
        while left:
            # The lock is held for one piece at a time, so that a training
            # thread with a full buffer can fold a piece itself in between.
            with self._fold_lock:
                taken = self._fold_rewards(left)
            left -= taken
            if not taken:
                break
            if left:
                time.sleep(0)  # let the training thread run between pieces

    def _fold_inline(self) -> bool:
        """On the training thread, when a sample buffer is full: fold one piece now.

        A worker that cannot keep up (a flood of steps holds the interpreter)
        would otherwise make the buffers drop samples. One piece costs tens of
        microseconds; if the worker is folding at this moment, nothing is done
        (the caller drops and counts the oldest entry instead).
        """
        if self._record_reward is None or not self._fold_lock.acquire(blocking=False):
            return False
        try:
            self._fold_durations()
            self._fold_rewards(len(self.rewards))
        finally:
            self._fold_lock.release()
        return True

    def _fold_durations(self) -> None:
        durations = self.durations
        count = len(durations)
        if not count or self._record_duration is None:
            return
        values = np.fromiter((durations.popleft() for _ in range(count)), np.float64, count)
        finite = np.isfinite(values)
        self._count_fold_errors(count - int(np.count_nonzero(finite)), 0)
        values = values[finite]
        negative = values < 0  # a step_time= below zero
        self._count_fold_errors(0, int(np.count_nonzero(negative)))
        self._record_duration(values[~negative])

    def _fold_rewards(self, limit: int) -> int:
        """Fold up to about _FOLD_CHUNK samples from at most ``limit`` chunks; returns chunks taken."""
        buffer = self.rewards
        pieces = []
        size = taken = invalid = 0
        while taken < limit and buffer and size < _FOLD_CHUNK:
            taken += 1
            # A list is copied unchecked on the training thread: text,
            # None or huge ints inside are found here.
            chunk = to_numbers(buffer.popleft())
            if chunk is None:
                invalid += 1
                continue
            pieces.append(chunk)
            size += chunk.size
        non_finite = 0
        if pieces and self._record_reward is not None:
            values = np.concatenate(pieces)
            finite = np.isfinite(values)
            non_finite = values.size - int(np.count_nonzero(finite))
            self._record_reward(values[finite])
        self._count_fold_errors(non_finite, invalid)
        return taken

    def _count_fold_errors(self, non_finite: int, invalid: int) -> None:
        if non_finite:
            self._ledger.count("non_finite", non_finite)
        if invalid:
            self._ledger.report(
                "invalid_value", "rewards", "rewards or step_time that are not numbers "
                "(text, None, negative durations, huge ints) are left out of the histograms",
            )
            if invalid > 1:
                self._ledger.count("invalid_value", invalid - 1)
