"""Per-sample values buffered on the training thread and folded into histograms in bulk.

Recording a histogram sample costs a microsecond or more through an SDK; a
step of 64 rewards and 64 completion lengths would cost more than the rest
of the step. The training
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
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from mlx_otel.errors import ErrorLedger
from mlx_otel.records import to_numbers

__all__ = ["SampleBuffers"]

#: Samples folded into a histogram in one piece (about a millisecond of NumPy)
#: before the interpreter is yielded to the training thread.
_FOLD_CHUNK = 1 << 16


class SampleBuffers:
    """The per-sample values of steps not folded yet, by buffer, and their folding.

    Three buffers: :attr:`rewards` and :attr:`completion_lengths` hold one
    chunk (tuple or array) per step, :attr:`durations` one float per step.
    ``max_samples`` bounds each buffer in steps. Rewards and durations that
    are not numbers or not finite are left out of the histograms and counted
    in the ledger; completion lengths that are not valid (negative, not
    numbers) are left out silently, as the recorder counts them once when it
    checks the step's completions.
    """

    #: The buffers, by the name :meth:`fold_into` maps to a histogram.
    NAMES: tuple[str, ...] = ("rewards", "durations", "completion_lengths")

    def __init__(self, *, ledger: ErrorLedger, max_samples: int) -> None:
        self._ledger = ledger
        self._max_samples = max_samples
        #: Per-step reward chunks (tuples of floats or float arrays).
        self.rewards: deque[Any] = deque()
        #: Step durations in seconds.
        self.durations: deque[float] = deque()
        #: Per-step chunks of completion lengths in tokens.
        self.completion_lengths: deque[Any] = deque()
        self._fold_lock = threading.Lock()
        self._record: dict[str, Callable[[np.ndarray], None]] = {}

    def fold_into(self, histograms: Mapping[str, Callable[[np.ndarray], None]]) -> None:
        """Where :meth:`fold` records each buffer (finite float64 arrays), by buffer name.

        A buffer without a histogram here is not filled at all.
        """
        unknown = set(histograms) - set(self.NAMES)
        if unknown:
            raise KeyError(f"no sample buffers {sorted(unknown)}; known: {list(self.NAMES)}")
        self._record = dict(histograms)

    def wants(self, name: str) -> bool:
        """Whether buffer ``name`` is folded somewhere (else adding to it is pointless)."""
        return name in self._record

    def add(self, buffer: deque[Any], item: Any, task: str) -> None:
        """Append one step's samples to ``buffer`` (one of this object's buffers)."""
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
        if not self._record:
            return
        with self._fold_lock:
            self._fold_durations()
        for buffer, counted in ((self.rewards, True), (self.completion_lengths, False)):
            left = len(buffer)  # what is buffered now; later samples wait
            while left:
                # The lock is held for one piece at a time, so that a training
                # thread with a full buffer can fold a piece itself in between.
                with self._fold_lock:
                    taken = self._fold_chunks(buffer, left, counted)
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
        if not self._record or not self._fold_lock.acquire(blocking=False):
            return False
        try:
            self._fold_durations()
            self._fold_chunks(self.rewards, len(self.rewards), True)
            self._fold_chunks(self.completion_lengths, len(self.completion_lengths), False)
        finally:
            self._fold_lock.release()
        return True

    def _fold_durations(self) -> None:
        durations = self.durations
        count = len(durations)
        record = self._record.get("durations")
        if not count or record is None:
            return
        values = np.fromiter((durations.popleft() for _ in range(count)), np.float64, count)
        finite = np.isfinite(values)
        self._count_fold_errors(count - int(np.count_nonzero(finite)), 0)
        values = values[finite]
        negative = values < 0  # a step_time= below zero
        self._count_fold_errors(0, int(np.count_nonzero(negative)))
        record(values[~negative])

    def _fold_chunks(self, buffer: deque[Any], limit: int, counted: bool) -> int:
        """Fold up to about _FOLD_CHUNK samples from at most ``limit`` chunks of
        ``buffer``; returns chunks taken. ``counted``: count what is left out."""
        record = self._record.get("rewards" if buffer is self.rewards else "completion_lengths")
        pieces = []
        copies: list[tuple[Any, ...]] = []  # lists the training thread copied, unchecked
        size = taken = invalid = 0
        while taken < limit and buffer and size < _FOLD_CHUNK:
            taken += 1
            chunk = buffer.popleft()
            if chunk.__class__ is tuple:
                copies.append(chunk)
                size += len(chunk)
                continue
            chunk = to_numbers(chunk)
            if chunk is None:
                invalid += 1
                continue
            pieces.append(chunk)
            size += chunk.size
        if copies:
            # A histogram does not care about order: the copies convert together
            # (one NumPy call when they have one length, the usual GRPO step).
            # Text, None or huge ints inside are found here, a copy at a time.
            together = to_numbers(copies)
            if together is not None:
                pieces.append(together)
            else:
                for copy in copies:
                    chunk = to_numbers(copy)
                    if chunk is None:
                        invalid += 1
                    else:
                        pieces.append(chunk)
        non_finite = 0
        if pieces and record is not None:
            values = np.concatenate(pieces)
            kept = np.isfinite(values)
            non_finite = values.size - int(np.count_nonzero(kept))
            if not counted:
                kept &= values >= 0  # with NaN already out: no invalid comparison
            record(values[kept])
        if counted:
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

