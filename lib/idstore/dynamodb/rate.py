"""The write budget: choosing the job's WCU/s, splitting it per task, pacing and backing off.

A task paces itself with a token bucket in WCU (charged up front with an estimate, then
corrected with the capacity DynamoDB reports consumed) and cuts its own rate after
throttle errors (AIMD: multiplicative decrease, additive increase back to its share). What
a task leaves of its budget is carried to the next task of the same write in its worker.
"""
import math
import threading
import time
from dataclasses import dataclass
from typing import Any, Dict, Optional, Tuple

# A new on-demand table serves about this many writes/s before it has to scale.
ON_DEMAND_WARM_DEFAULT = 4000.0
# in-flight requests are sized so that a task reaches its share at this request latency
DESIGN_LATENCY_S = 0.05
MAX_IN_FLIGHT = 64


def choose_write_rate(table: Dict[str, Any], write_rate: float, capacity_fraction: float) -> Tuple[float, str]:
    """(WCU/s for the whole job, why) from config and a DescribeTable 'Table'."""
    if write_rate > 0:
        return write_rate, f"dynamodb.write_rate = {write_rate:g} WCU/s"
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing == "PAY_PER_REQUEST":
        warm = table.get("WarmThroughput", {}).get("WriteUnitsPerSecond") or 0
        ceiling = table.get("OnDemandThroughput", {}).get("MaxWriteRequestUnits") or 0
        if warm:
            base, source = float(warm), "warm throughput"
        else:
            base, source = ON_DEMAND_WARM_DEFAULT, "a new on-demand table's warm throughput"
        if 0 < ceiling < base:
            base, source = float(ceiling), "the table's on-demand maximum"
        rate = capacity_fraction * base
        return rate, f"on-demand table: {capacity_fraction:g} x {base:g} WCU/s ({source})"
    provisioned = table.get("ProvisionedThroughput", {}).get("WriteCapacityUnits", 0)
    # a write to the table is also a write to every GSI: the smallest budget rules
    for index in table.get("GlobalSecondaryIndexes", []):
        index_wcu = index.get("ProvisionedThroughput", {}).get("WriteCapacityUnits", 0)
        if index_wcu:
            provisioned = min(provisioned, index_wcu)
    if provisioned <= 0:
        raise ValueError("the table reports no provisioned write capacity; set dynamodb.write_rate")
    rate = capacity_fraction * provisioned
    return rate, f"provisioned table: {capacity_fraction:g} x {provisioned} WCU"


# a Scan segment's pace when nothing else sets one (on-demand tables, dynamodb.read_rate = 0)
SCAN_RCU_PER_SEGMENT = 1000.0


def scan_read_rate(cfg, table: Dict[str, Any]) -> float:
    """RCU/s for a whole Scan of the table, the one rule for every scan (the mirror's, the
    filter's --ids dynamodb): `dynamodb.read_rate` when set; else, for a provisioned table,
    `capacity_fraction` x its provisioned RCU from DescribeTable (`table`); else 0, the
    scanner's default pace of SCAN_RCU_PER_SEGMENT per segment."""
    if cfg.read_rate > 0:
        return float(cfg.read_rate)
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    provisioned = table.get("ProvisionedThroughput", {}).get("ReadCapacityUnits", 0)
    if billing != "PAY_PER_REQUEST" and provisioned:
        return float(cfg.capacity_fraction * provisioned)
    return 0.0


def per_task_rate(job_rate: float, partitions: int, concurrent_slots: int) -> float:
    """Each task's share: the job rate over the tasks that can run at once."""
    return job_rate / max(1, min(partitions, concurrent_slots))


def requests_in_flight(task_rate: float, floor: int = 1, latency_s: float = DESIGN_LATENCY_S,
                       batch_wcu: float = 25.0) -> int:
    """Concurrent requests a task needs to reach `task_rate` WCU/s when each call takes
    `latency_s` (Little's law, with half again as many for latency spikes), at least `floor`."""
    needed = math.ceil(1.5 * task_rate * latency_s / batch_wcu) + 1
    return int(min(MAX_IN_FLIGHT, max(floor, needed)))


class TokenBucket:
    """Tokens are WCU; refilled at `rate` per second up to `burst`. Thread-safe.

    Charged up front with an estimate, then corrected with what DynamoDB reports
    consumed, so the balance may go negative: the next caller waits the debt off.
    Waiters are served one at a time (no thundering herd of sender threads). The rate
    and size may change at any time (`set_rate`); a rate of 0 holds every caller.
    """

    max_wait_s = 0.1  # the longest single sleep of a waiter before it looks at the rate again

    def __init__(self, rate: float, burst: float, initial: float = 0.0, clock=time.monotonic, sleep=time.sleep):
        if rate <= 0:
            raise ValueError("a token bucket needs a positive rate")
        self.rate = float(rate)
        self.burst = max(float(burst), 1.0)
        self._clock, self._sleep = clock, sleep
        # a new task starts (nearly) empty: a retried task must not burst on top of the others
        self._tokens = min(float(initial), self.burst)
        self._stamp = clock()
        self._lock = threading.Lock()
        self._turn = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, tokens: float) -> float:
        """Take `tokens`, waiting as needed; returns seconds this caller slept."""
        waited = 0.0
        with self._turn:
            while True:
                with self._lock:
                    self._refill()
                    need = min(tokens, self.burst)
                    if self._tokens >= need - 1e-9:  # float rounding must not strand a waiter
                        self._tokens -= tokens
                        return waited
                    # in slices: the rate may change meanwhile (a new lease), or be 0 for now
                    wait = min(self.max_wait_s, (need - self._tokens) / self.rate) if self.rate > 0 \
                        else self.max_wait_s
                self._sleep(wait)
                waited += wait

    def adjust(self, tokens: float) -> None:
        """Add (or, when negative, take) tokens after the fact."""
        with self._lock:
            self._refill()
            self._tokens = min(self.burst, self._tokens + tokens)

    def set_rate(self, rate: float, burst: Optional[float] = None) -> None:
        """A new refill rate (0 = hold), and a new size when `burst` is given (tokens over it are dropped)."""
        with self._lock:
            self._refill()
            self.rate = max(0.0, float(rate))
            if burst is not None:
                self.burst = max(float(burst), 1.0)
                self._tokens = min(self._tokens, self.burst)

    def balance(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens


@dataclass(frozen=True)
class AimdPolicy:
    """How a task's rate answers throttling: see AimdRate."""

    decrease: float = 0.7  # the rate's factor at a cut
    increase: float = 0.05  # of the target, per window without a cut
    window_s: float = 0.5
    floor: float = 0.05  # of the target: the lowest rate
    unprocessed_limit: float = 0.5  # the share of a window's requests returned unprocessed that cuts


class AimdRate:
    """A task's rate under throttling, applied to its token bucket.

    The rate is a fraction of the task's target, its share of the budget (which a lease
    may change at any time: `set_target`). Multiplicative decrease (x `decrease`) on a
    throttle error, or when more than `unprocessed_limit` of the requests sent in a window
    of `window_s` came back unprocessed (DynamoDB's other way of saying the table is over
    its capacity; a few unprocessed items are only retried). At most one cut per window:
    the requests in flight are throttled together. Additive increase (+ `increase` of the
    target per window without a cut) back to the target, never above it nor below
    `floor` x target.
    """

    def __init__(self, bucket: TokenBucket, target: float, policy: AimdPolicy = AimdPolicy(),
                 initial: float = 0.0, clock=time.monotonic):
        self.bucket, self.target, self.policy = bucket, float(target), policy
        self._clock = clock
        self._lock = threading.Lock()
        self.fraction = (min(1.0, max(policy.floor, initial / self.target))
                         if initial > 0 and self.target > 0 else 1.0)
        self.cuts = 0
        self._last_cut = -float("inf")
        self._window_start = clock()
        self._sent = self._unprocessed = 0
        bucket.set_rate(self.rate)

    @property
    def rate(self) -> float:
        return self.fraction * self.target

    def set_target(self, target: float, burst: Optional[float] = None) -> None:
        """A new share of the budget: the rate keeps its fraction of it (a cut stays a cut)."""
        with self._lock:
            self.target = max(0.0, float(target))
            rate = self.rate
        self.bucket.set_rate(rate, burst)

    def _cut(self, now: float) -> bool:
        if now - self._last_cut < self.policy.window_s:
            return False
        self.fraction = max(self.policy.floor, self.fraction * self.policy.decrease)
        self.cuts += 1
        self._last_cut = now
        return True

    def on_throttle(self) -> bool:
        """A call failed with a throttle error; True when that cut the rate."""
        with self._lock:
            cut = self._cut(self._clock())
            rate = self.rate
        if cut:
            self.bucket.set_rate(rate)
        return cut

    def record(self, sent: int, unprocessed: int) -> bool:
        """A call came back with `unprocessed` of its `sent` requests; True when the rate was cut."""
        policy = self.policy
        with self._lock:
            now = self._clock()
            self._sent += sent
            self._unprocessed += unprocessed
            elapsed = now - self._window_start
            if elapsed < policy.window_s:
                return False
            over = self._sent and self._unprocessed > policy.unprocessed_limit * self._sent
            self._sent = self._unprocessed = 0
            self._window_start = now
            before = self.fraction
            cut = bool(over) and self._cut(now)
            if not cut and self.fraction < 1.0 and now - self._last_cut >= policy.window_s:
                steps = max(1, int(elapsed / policy.window_s))
                self.fraction = min(1.0, self.fraction + steps * policy.increase)
            changed = self.fraction != before
            rate = self.rate
        if changed:
            self.bucket.set_rate(rate)
        return cut


@dataclass(frozen=True)
class BudgetLeft:
    """What a task left of its budget: its bucket's `tokens` at `at` (the task's monotonic
    clock), and its rate's `fraction` of its share (the throttle state)."""

    tokens: float
    at: float
    fraction: float


class CarriedBudget:
    """The budget the last task of a write left in this Python worker, for the write's next task.

    Spark reuses Python workers, running a slot's tasks one after another in one process:
    the next task of the same write picks up where the last one stopped. Only the latest
    write's is kept. Thread-safe.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._write_id = ""
        self._left: Optional[BudgetLeft] = None

    def left(self, write_id: str) -> Optional[BudgetLeft]:
        """What the write's last task here left; None for a write without an id, or a first task."""
        with self._lock:
            return self._left if write_id and write_id == self._write_id else None

    def leave(self, write_id: str, left: BudgetLeft) -> None:
        with self._lock:
            self._write_id, self._left = write_id, left


CARRIED = CarriedBudget()  # the worker's: module state lives as long as the Python worker


def task_budget(task_rate: float, burst_s: float, left: Optional[BudgetLeft], leased: bool,
                clock=time.monotonic) -> Tuple[TokenBucket, AimdRate]:
    """A task's token bucket (sized `burst_s` of `task_rate`) and the rate that drives it,
    starting from what the write's last task in this worker `left`, if any."""
    burst = task_rate * burst_s
    if left is None or leased:
        # a worker's first task starts with one batch's worth: no wait, no burst. A leased
        # task never inherits tokens: its slot's share went to the other tasks in between
        # (it inherits the throttle state, the rate's fraction of its share)
        bucket = TokenBucket(task_rate, burst, initial=min(25.0, burst), clock=clock)
        fraction = left.fraction if left else 1.0
    else:
        # without a lease the previous task's bucket carries over, so the seconds between
        # two tasks of one slot are made up (up to the burst), not lost
        fraction = left.fraction
        bucket = TokenBucket(task_rate * fraction, burst,
                             initial=left.tokens + (clock() - left.at) * task_rate * fraction, clock=clock)
    return bucket, AimdRate(bucket, task_rate, initial=fraction * task_rate, clock=clock)
