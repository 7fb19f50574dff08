"""The queue of steps between the training thread and the worker, and the latest values.

The training thread appends one plain tuple per step to :attr:`StepQueue.records`
(in :class:`~mlx_otel.records.StepRecord`'s field order, plus the step's
completions: a NamedTuple costs 0.3 µs more to build there). Off that thread,
:meth:`StepQueue.drain` turns queued tuples into records for the sinks, judging
each step's completions once and scoring a whole drain's spikes at once, and
keeps the latest value of every metric; :meth:`StepQueue.refresh_view` builds
what a scrape serves: the drained values plus the steps still queued.

    queue = StepQueue(admission=admission, completions=completions)
    queue.records.append((step, time.time(), {"loss": 0.5}, {}, None, None, None, {}, None))
    queue.drain()[0].values       # {'loss': 0.5}
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

from mlx_otel.pipeline.admission import Admission
from mlx_otel.pipeline.completions import CompletionLog, Derived
from mlx_otel.records import MemoryReading, StepRecord

__all__ = ["StepQueue"]

#: Labelled values of a step's RL health: each replaces the last step's whole
#: (a label absent from this step, e.g. no wrong answers, is not served stale).
_RL_LABELLED = ("zero_std_groups_ratio", "completion_length_mean")


class StepQueue:
    """Steps queued for the worker, and the latest values of those drained.

    The training thread only appends to :attr:`records` (its bound is the
    recorder's); everything else here runs off that thread, under one lock
    that a drain and a scrape's refresh share.
    """

    def __init__(
        self, *, admission: Admission, completions: CompletionLog, started: float | None = None
    ) -> None:
        self.admission = admission
        self._completions = completions
        #: Queued steps as plain tuples (StepRecord's fields, then the completions).
        self.records: deque[tuple[Any, ...]] = deque()
        # Latest values applied from drained records, and the scrape's view
        # (those plus the steps not drained yet), rebuilt before each scrape.
        self._lock = threading.Lock()
        self._latest: dict[str, float] = {}
        if started is not None:  # the last step's time before the first step
            self._latest["step_timestamp"] = started
        self._latest_custom: dict[str, float] = {}
        self._latest_labelled: dict[str, dict[str, float]] = {}
        self.view: dict[str, float] = {}
        self.custom_view: dict[str, float] = {}
        self.labelled_view: dict[str, dict[str, float]] = {}

    def _apply(
        self,
        latest: dict[str, float],
        custom: dict[str, float],
        labelled: dict[str, dict[str, float]],
        fields: Any,
        derived: tuple[Mapping[str, float], Mapping[str, Mapping[str, float]]] | None = None,
    ) -> None:
        """Fold one queued step (and what its completions gave) into latest-values mappings."""
        latest.update(fields[2])
        latest["step"] = fields[0]
        latest["step_timestamp"] = fields[1]
        if fields[3]:
            if self.admission.renamed:
                names = self.admission.custom_names
                for key, value in fields[3].items():
                    custom[names[key]] = value
            else:
                custom.update(fields[3])
        for key, series in fields[7].items():
            labelled.setdefault(key, {}).update(series)
        if derived is not None:
            latest.update(derived[0])
            for key, series in derived[1].items():
                if key in _RL_LABELLED:
                    labelled[key] = dict(series)
                else:
                    labelled.setdefault(key, {}).update(series)

    def _derive(self, fields: Any) -> Derived | None:
        """What a queued step's completions give (computed once; see CompletionLog.derive)."""
        return self._completions.derive(fields[4], fields[8])

    @staticmethod
    def _derives(fields: Any) -> bool:
        """Whether a queued step has completions (or rewards grouped by the config)."""
        return fields[8] is not None

    def refresh_view(self) -> None:
        """Latest values for a scrape: what was drained plus the steps still queued.

        Of the queued steps, only the last one with completions has its RL
        health computed (it is the one served); anomaly scores wait for the
        worker, which computes them once per step.
        """
        with self._lock:
            view = dict(self._latest)
            custom = dict(self._latest_custom)
            labelled = {k: dict(v) for k, v in self._latest_labelled.items()}
            queued = list(self.records)
            last = next((i for i in range(len(queued) - 1, -1, -1) if self._derives(queued[i])), -1)
            for i, fields in enumerate(queued):
                derived = self._derive(fields) if i == last else None
                self._apply(view, custom, labelled, fields, derived)
        self.view = view
        self.custom_view = custom
        self.labelled_view = labelled

    def set_latest(self, key: str, value: float) -> None:
        """Store a value that does not come from a step (the global gradient norm)."""
        with self._lock:
            self._latest[key] = value

    def drain(self, limit: int | None = None) -> list[StepRecord]:
        """Queued steps as records (at most ``limit``); custom values under their
        sanitised names.

        Only the steps queued when the call began are taken: while training
        logs as fast as the worker drains, an open-ended loop would never end
        and its batch would grow without bound.
        """
        records = self.records
        batch = []
        names = self.admission.custom_names
        renamed = self.admission.renamed
        count = len(records) if limit is None else min(limit, len(records))
        with self._lock:
            taken = [records.popleft() for _ in range(count)]
            # What each step's completions give, labelled values beside the step's own.
            extras: list[dict[str, Mapping[str, float]]] = []
            for fields in taken:
                extra: dict[str, Mapping[str, float]] = {}
                if fields[8] is not None and (derived := self._derive(fields)) is not None:
                    fields[2].update(derived[0])  # popped: this dict is the record's alone
                    extra.update(derived[1])
                extras.append(extra)
            self._score(taken, extras)
            latest, latest_custom, latest_labelled = (
                self._latest, self._latest_custom, self._latest_labelled)  # fmt: skip
            new = tuple.__new__
            # _apply() of each step, inlined: the worker runs this for every
            # step of a flood, on the interpreter the training loop shares.
            for fields, extra in zip(taken, extras, strict=True):
                step, stamp, values, custom, rewards, duration, memory, labelled, _ = fields
                latest.update(values)
                if custom:
                    if renamed:  # values are floats already (see record())
                        custom = {names[key]: value for key, value in custom.items()}
                    latest_custom.update(custom)
                for key, series in labelled.items():
                    latest_labelled.setdefault(key, {}).update(series)
                if extra:
                    for key, series in extra.items():
                        if key in _RL_LABELLED:
                            latest_labelled[key] = dict(series)
                        else:
                            latest_labelled.setdefault(key, {}).update(series)
                    labelled = {**labelled, **extra}
                # tuple.__new__ fills the NamedTuples' fields in order without
                # their Python-level __new__ (0.2 µs a step).
                batch.append(new(StepRecord, (
                    step, stamp, values, custom, rewards, duration,
                    None if memory is None else new(MemoryReading, memory), labelled,
                )))  # fmt: skip
            if taken:
                latest["step"], latest["step_timestamp"] = taken[-1][0], taken[-1][1]
            counts = self._completions.anomalies.counts
            if counts:  # served from a metric's first value, scored or not yet
                latest_labelled["anomalies"] = dict(counts)
        return batch

    def _score(
        self, taken: list[tuple[Any, ...]], extras: list[dict[str, Mapping[str, float]]]
    ) -> None:
        """Score drained steps' values; each step's scores and the counts go into its extra.

        The counts are served from a metric's first value (a counter starts
        at 0); a step's record carries them once it has scores (after the
        first few steps), so short runs keep their columns.
        """
        scores, counts = self._completions.anomalies.observe_many([f[2] for f in taken])
        for extra, step_scores, step_counts in zip(extras, scores, counts, strict=True):
            if step_scores is not None and step_counts is not None:
                extra["anomaly_score"] = step_scores
                extra["anomalies"] = step_counts
