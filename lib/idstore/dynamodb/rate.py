"""The write budget: choosing the job's WCU/s, splitting it per task, and a token bucket."""
import threading
import time
from typing import Any, Dict, Tuple

# A new on-demand table serves about this many writes/s before it has to scale.
ON_DEMAND_WARM_DEFAULT = 4000.0


def choose_write_rate(table: Dict[str, Any], write_rate: float, capacity_fraction: float) -> Tuple[float, str]:
    """(WCU/s for the whole job, why) from config and a DescribeTable 'Table'."""
    if write_rate > 0:
        return write_rate, f"dynamodb.write_rate = {write_rate:g} WCU/s"
    billing = table.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
    if billing == "PAY_PER_REQUEST":
        warm = table.get("WarmThroughput", {}).get("WriteUnitsPerSecond") or 0
        ceiling = table.get("OnDemandThroughput", {}).get("MaxWriteRequestUnits") or 0
        base, source = (float(warm), "warm throughput") if warm else (ON_DEMAND_WARM_DEFAULT, "a new on-demand table's warm throughput")
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


def per_task_rate(job_rate: float, partitions: int, concurrent_slots: int) -> float:
    """Each task's share: the job rate over the tasks that can run at once."""
    return job_rate / max(1, min(partitions, concurrent_slots))


class TokenBucket:
    """Tokens are WCU; refilled at `rate` per second up to `burst`. Thread-safe.

    Charged up front with an estimate, then corrected with what DynamoDB reports
    consumed, so the balance may go negative: the next caller waits the debt off.
    """

    def __init__(self, rate: float, burst: float, clock=time.monotonic, sleep=time.sleep):
        self.rate = rate
        self.burst = max(burst, 1.0)
        self._clock, self._sleep = clock, sleep
        self._tokens = 0.0  # start empty: a restarted task must not burst on top of others
        self._stamp = clock()
        self._lock = threading.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    def acquire(self, tokens: float) -> float:
        """Take `tokens`, waiting as needed; returns seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                self._refill()
                if self._tokens >= min(tokens, self.burst):
                    self._tokens -= tokens
                    return waited
                wait = (min(tokens, self.burst) - self._tokens) / self.rate
            self._sleep(wait)
            waited += wait

    def adjust(self, tokens: float) -> None:
        """Add (or, when negative, take) tokens after the fact."""
        with self._lock:
            self._refill()
            self._tokens = min(self.burst, self._tokens + tokens)
