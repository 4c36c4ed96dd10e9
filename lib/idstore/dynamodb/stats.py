"""The write statistics, defined once: a task's counts, its stats row (and that row's Arrow
schema, for mapInArrow) and the driver's summary of a write.

`Counts` are the figures that add up over tasks; a task's row (`TaskStats`) adds what
belongs to the task alone, the summary (`WriteStats`) what is derived over all of them.
"""
from dataclasses import dataclass, field, fields
from typing import Any, Dict, Iterable, Mapping

import pyarrow as pa


@dataclass(frozen=True)
class Counts:
    """What tasks did, in figures that are summed over them. Adding two gives their sum."""

    items_in: int = 0  # rows read
    put: int = 0  # put requests acknowledged by DynamoDB
    deleted: int = 0  # delete requests acknowledged (the key may have been absent)
    written: int = 0  # put + deleted
    duplicates: int = 0  # rows whose key this partition had already queued
    rejected: int = 0  # sum of rejected_<reason>
    # one per items.REJECTION_REASONS (a test holds the two together)
    rejected_key_missing: int = 0
    rejected_key_too_long: int = 0
    rejected_item_too_large: int = 0
    requests: int = 0  # BatchWriteItem calls, retries included
    requests_partial: int = 0  # answered with some UnprocessedItems
    retries_throttle: int = 0  # calls answered with a throttle error
    retries_5xx: int = 0
    retries_connection: int = 0
    unprocessed_resent: int = 0  # requests returned as UnprocessedItems and queued again
    rate_cuts: int = 0  # times the task cut its rate (throttle errors, mostly-unprocessed calls)
    consumed_wcu: float = 0.0
    throttled_s: float = 0.0  # backoff scheduled after throttles and unprocessed items
    budget_wait_s: float = 0.0  # time spent waiting for the task's own token bucket
    lease_renewals: int = 0  # grants received from the driver's lease service
    lease_fallbacks: int = 0  # times the task ran on the static share, the lease service unreachable

    def __add__(self, other: "Counts") -> "Counts":
        return Counts(*(getattr(self, name) + getattr(other, name) for name in _COUNTED))

    def counts(self) -> "Counts":
        """Only the counts (of a task's row or a summary)."""
        return Counts(*(getattr(self, name) for name in _COUNTED))


_COUNTED = tuple(f.name for f in fields(Counts))


@dataclass(frozen=True)
class TaskStats(Counts):
    """One task's stats row: its counts, then what belongs to the task alone (not summed)."""

    partition_id: int = 0
    task_rate: float = 0.0  # the task's share of the budget, WCU/s (leased: its mean over the task)
    in_flight: int = 0  # sender threads
    latency_p50_ms: float = 0.0
    latency_p99_ms: float = 0.0
    seconds: float = 0.0

    def row(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def of_row(cls, row: Mapping[str, Any]) -> "TaskStats":
        """A row as Spark collects it (a missing or null value counts as 0)."""
        return cls(**{f.name: f.type(row.get(f.name) or 0) for f in fields(cls)})


_ARROW_TYPES = {int: pa.int64(), float: pa.float64()}
STATS_FIELDS = tuple((f.name, _ARROW_TYPES[f.type]) for f in fields(TaskStats))
STATS_SCHEMA = pa.schema(STATS_FIELDS)
STATS_DDL = ", ".join(f"{name} {'bigint' if typ == pa.int64() else 'double'}" for name, typ in STATS_FIELDS)


@dataclass(frozen=True)
class WriteStats(Counts):
    """A write's summary: every task's counts summed, then figures over the tasks.

    `as_dict()` is the summary as the run report prints it.
    """

    partitions: int = 0  # stats rows, one a task
    latency_p50_ms: float = 0.0  # the worst task's
    latency_p99_ms: float = 0.0  # the worst task's
    task_seconds_max: float = 0.0  # the longest task
    throttled_share: float = field(init=False)  # of the calls, those answered with a throttle error
    tasks_peak: int = 0  # most tasks that held a lease at once

    def __post_init__(self) -> None:
        share = self.retries_throttle / self.requests if self.requests else 0.0
        object.__setattr__(self, "throttled_share", share)

    @classmethod
    def of(cls, rows: Iterable[TaskStats], tasks_peak: int = 0) -> "WriteStats":
        """The summary of the tasks' rows."""
        rows = list(rows)
        summed = sum((row.counts() for row in rows), Counts())
        return cls(
            *(getattr(summed, name) for name in _COUNTED),
            partitions=len(rows),
            latency_p50_ms=max((row.latency_p50_ms for row in rows), default=0.0),
            latency_p99_ms=max((row.latency_p99_ms for row in rows), default=0.0),
            task_seconds_max=max((row.seconds for row in rows), default=0.0),
            tasks_peak=tasks_peak,
        )

    @classmethod
    def nothing(cls) -> "WriteStats":
        """The summary of a phase that wrote nothing: every figure 0."""
        return cls()

    @property
    def retries(self) -> int:
        """Calls and requests sent again: throttled, 5xx, connection errors, unprocessed items."""
        return self.retries_throttle + self.retries_5xx + self.retries_connection + self.unprocessed_resent

    @property
    def throttles(self) -> int:
        """DynamoDB pushing back: throttle errors retried and UnprocessedItems re-sent."""
        return self.retries_throttle + self.unprocessed_resent

    def as_dict(self) -> Dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
