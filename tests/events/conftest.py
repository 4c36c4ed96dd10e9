"""Archives written byte by byte, and the plain-Python filter the job is checked against."""
import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

import pyarrow.parquet as pq
import pytest

from idstore import io
from idstore.config import load_config
from idstore.pipeline.report import RunReport

FLAT_SCHEMA = "id STRING, time STRING, productId STRING, reason STRING"


def write_lines(root: Path, day: str, name: str, lines: Iterable[str]) -> Path:
    """One archive file of `lines`, gzip-compressed when `name` ends in .gz."""
    path = Path(root) / f"dt={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = "".join(line + "\n" for line in lines).encode("utf-8")
    path.write_bytes(gzip.compress(payload) if name.endswith(".gz") else payload)
    return path


def nested_event(event_id: str, product_id: Optional[str], day: str) -> str:
    detail = {} if product_id is None else {"productId": product_id}
    return json.dumps({"id": event_id, "time": f"{day}T10:00:00Z", "detail-type": "Fulfillment Failure",
                       "source": "test", "detail": {**detail, "fcId": "SEA8", "stage": "pick"}})


def flat_event(event_id: str, product_id: Optional[str], day: str) -> str:
    body = {"id": event_id, "time": f"{day}T10:00:00Z", "reason": "DAMAGED_ITEM"}
    if product_id is not None:
        body["productId"] = product_id
    return json.dumps(body)


@dataclass
class Reference:
    """What a plain-Python filter finds in the same files."""

    kept: Set[Tuple[str, str]] = field(default_factory=set)  # (event id, day)
    read: Dict[str, int] = field(default_factory=dict)
    matched: Dict[str, int] = field(default_factory=dict)
    bad: List[Tuple[str, str, str]] = field(default_factory=list)  # (reason, day, raw line)

    def count(self, reason: str) -> int:
        return sum(1 for r, _, _ in self.bad if r == reason)


def _lines(path: Path) -> List[str]:
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    return [line for line in raw.decode("utf-8").split("\n") if line.strip()]


def reference_filter(root: Path, ids: Set[str], id_field: str, days: Optional[Sequence[str]] = None,
                     skip: Sequence[Path] = ()) -> Reference:
    """Classify every line like the job promises: malformed, missing_id, kept or dropped."""
    ref = Reference()
    parts = id_field.split(".")
    for folder in sorted(Path(root).glob("dt=*")):
        day = folder.name[3:]
        if days is not None and day not in days:
            continue
        ref.read.setdefault(day, 0)
        ref.matched.setdefault(day, 0)
        for path in sorted(folder.iterdir()):
            if path.name.startswith((".", "_")) or path in skip:
                continue
            for line in _lines(path):
                ref.read[day] += 1
                try:
                    value = json.loads(line)
                except ValueError:
                    ref.bad.append(("malformed", day, line))
                    continue
                malformed = not isinstance(value, dict)
                for part in parts[:-1]:
                    if malformed:
                        break
                    value = value.get(part)
                    if value is None:
                        value = {}
                    malformed = not isinstance(value, dict)
                if malformed:
                    ref.bad.append(("malformed", day, line))
                    continue
                product = value.get(parts[-1])
                if product is None or not str(product).strip():
                    ref.bad.append(("missing_id", day, line))
                elif product in ids:
                    ref.kept.add((json.loads(line)["id"], day))
                    ref.matched[day] += 1
    return ref


def output_events(root: Path) -> Set[Tuple[str, str]]:
    """(event id, day) of every row in the job's Parquet output, read with pyarrow."""
    kept = set()
    for path in Path(root).glob("dt=*/*.parquet"):
        day = path.parent.name[3:]
        kept.update((event_id, day) for event_id in pq.read_table(path, columns=["id"]).column("id").to_pylist())
    return kept


def output_files(root: Path) -> Dict[str, List[Tuple[str, int, int]]]:
    """{day: [(file name, size, mtime_ns)]}: what a re-run must leave alone."""
    found: Dict[str, List[Tuple[str, int, int]]] = {}
    for path in sorted(Path(root).glob("dt=*/*.parquet")):
        stat = path.stat()
        found.setdefault(path.parent.name[3:], []).append((path.name, stat.st_size, stat.st_mtime_ns))
    return found


@pytest.fixture
def job(tmp_path, spark):
    """A config factory over tmp_path, and a runner of run_filter in this process."""
    from idstore.pipeline.filter import run_filter
    from idstore.pipeline.options import FilterOptions

    data = tmp_path / "data"

    class Job:
        events = data / "events"
        output = data / "filtered"
        quarantine = data / "quarantine"
        snapshots = data / "snapshots"

        def config(self, *overrides: str):
            return load_config(None, [
                f"events.path={self.events}", f"output.path={self.output}",
                f"output.quarantine_path={self.quarantine}", f"snapshot.path={self.snapshots}",
                *overrides,
            ])

        def snapshot(self, ids: Iterable[str], run_id: str = "snap-1") -> None:
            # the id set as a sync run leaves it: Parquet per run and the _LATEST.json pointer
            target = self.snapshots / f"run_id={run_id}"
            spark.createDataFrame([(i,) for i in ids], "product_id string").write.mode("overwrite").parquet(str(target))
            io.write_json(str(self.snapshots / "_LATEST.json"),
                          {"run_id": run_id, "path": str(target), "id_column": "product_id"})

        def run(self, *overrides: str, start=None, end=None, run_id: str = "run-1") -> RunReport:
            # kept on the Job too: a run that raises (input not ready, say) still reports what it did
            self.report = RunReport(job="filter", run_id=run_id, config={})
            run_filter(spark, self.config(*overrides), self.report, {}, FilterOptions(start=start, end=end))
            return self.report

    return Job()
