"""Synthetic, seed-deterministic test data: program id sets and failure-event archives.

Used by the tests, the demo (`idstore local seed`) and the benchmarks; never by the jobs.
"""

import gzip
import hashlib
import json
import logging
import random
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Mapping, Sequence, Union

log = logging.getLogger(__name__)

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# Every pair of base-36 digits, so an id is four table lookups instead of eight divmods.
_PAIRS = [a + b for a in _ALPHABET for b in _ALPHABET]
_ID_SPACE = 36**8  # "B0" + 8 base-36 characters, like an ASIN
# Each program owns one slot of the id space; programs in different slots can never share an id.
_SLOT_SIZE = 36**5
_SLOTS = 36**3
# A bijection of the id space (the multiplier is coprime to 36) hides the slot from the id's look.
_MIX_MUL = 1_103_515_249
_MIX_ADD = 1_234_567_891
# random.sample keeps a set of about 4x the picks; above this a program would cost gigabytes.
MAX_IDS_PER_PROGRAM = 5_000_000

FC_IDS = ("SEA8", "PHX6", "BFI4", "DFW7", "ONT8", "LGB3", "MDW2", "JFK8", "CLT4", "ATL6")
STAGES = ("receive", "pick", "pack", "sort", "ship")
REASONS = (
    "OUT_OF_STOCK",
    "DAMAGED_ITEM",
    "LABEL_ERROR",
    "CARRIER_DELAY",
    "ADDRESS_INVALID",
    "SCAN_MISMATCH",
)
_ATTEMPTS = (1, 1, 1, 1, 2, 2, 3)
ACCOUNT = "123456789012"
REGION = "us-east-1"
# Values are generated from fixed alphabets, so plain %-formatting yields valid JSON.
_EVENT_TEMPLATE = (
    '{"id":"%s","time":"%sT%sZ","detail-type":"Fulfillment Failure",'
    '"source":"com.example.fulfillment","account":"' + ACCOUNT + '","region":"' + REGION + '",'
    '"detail":{"productId":"%s","fcId":"%s","stage":"%s","reason":"%s","attempt":%d}}'
)
_CLOCK = ["%02d:%02d:%02d" % (s // 3600, s // 60 % 60, s % 60) for s in range(86400)]
# The wide shape (bench-filter): `detail` gets this many more string fields, 20 fields in all.
WIDE_EXTRA_FIELDS = 15
_WIDE_VALUES = ("alpha", "bravo-charlie", "delta", "echo-foxtrot-golf", "hotel", "india-juliett")


def wide_detail_fields(extra: int) -> List[str]:
    """Names of the extra `detail` fields of the wide shape: note01, note02, ..."""
    return ["note%02d" % (i + 1) for i in range(extra)]


def program_slot(program: str) -> int:
    """The slot of the id space that `program`'s ids come from (stable across runs)."""
    digest = hashlib.sha256(program.encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") % _SLOTS


def program_ids(program: str, n: int, seed: int) -> List[str]:
    """`n` unique ids like Amazon product ids ("B0" + 8 base-36 chars) for `program`.

    Deterministic in (program, n, seed); two programs never share an id unless their
    names hash to the same slot (1 in 46,656), which seed_program_products rejects.
    """
    if not 0 <= n <= MAX_IDS_PER_PROGRAM:
        raise ValueError(f"n: expected 0..{MAX_IDS_PER_PROGRAM} ids per program, got {n}")
    rng = random.Random(f"idstore-ids:{seed}:{program}")
    base = program_slot(program) * _SLOT_SIZE
    pairs = _PAIRS
    ids = []
    for offset in rng.sample(range(_SLOT_SIZE), n):
        x = ((base + offset) * _MIX_MUL + _MIX_ADD) % _ID_SPACE
        q, d4 = divmod(x, 1296)
        q, d3 = divmod(q, 1296)
        d1, d2 = divmod(q, 1296)
        ids.append("B0" + pairs[d1] + pairs[d2] + pairs[d3] + pairs[d4])
    return ids


def seed_program_products(conn, programs: Mapping[str, int], seed: int) -> Dict[str, List[str]]:
    """(Re)create `program_products` and load `programs` ({name: id count}); returns the ids.

    `conn` is a pg8000 DB-API connection; rows go in with one COPY and one commit.
    """
    _check_programs(programs)
    ids = {program: program_ids(program, n, seed) for program, n in programs.items()}
    cursor = conn.cursor()
    cursor.execute("drop table if exists program_products")
    cursor.execute(
        "create table program_products ("
        "program text not null, product_id text, title text, price numeric, active boolean)"
    )
    cursor.execute(
        "copy program_products (program, product_id, title, price, active) from stdin",
        stream=_copy_chunks(ids, seed),
    )
    cursor.execute("analyze program_products")
    conn.commit()
    log.info("seeded program_products: %s", {p: len(v) for p, v in ids.items()})
    return ids


def _check_programs(programs: Mapping[str, int]) -> None:
    slots: Dict[int, str] = {}
    for program in programs:
        if not program or not program.replace("_", "").replace("-", "").isalnum():
            raise ValueError(f"program {program!r}: expected letters, digits, '_' or '-'")
        other = slots.setdefault(program_slot(program), program)
        if other != program:
            raise ValueError(f"programs {other!r} and {program!r} share an id slot; rename one")


def _copy_chunks(
    ids: Mapping[str, List[str]], seed: int, rows_per_chunk: int = 20000
) -> Iterator[bytes]:
    """COPY text-format rows in large chunks (pg8000 sends each chunk as one message)."""
    for program, program_ids_ in ids.items():
        rng = random.Random(f"idstore-products:{seed}:{program}")
        for start in range(0, len(program_ids_), rows_per_chunk):
            chunk = program_ids_[start : start + rows_per_chunk]
            yield "".join(
                "%s\t%s\t%s product %d\t%d.%02d\tt\n"
                % (program, pid, program, start + i, rng.randrange(1, 500), rng.randrange(100))
                for i, pid in enumerate(chunk)
            ).encode("utf-8")


def write_event_archive(
    root: Union[str, Path],
    start: date,
    days: int,
    n_events: int,
    match_ids: Sequence[str],
    other_ids: Sequence[str],
    match_fraction: float,
    seed: int,
    files_per_day: int = 4,
    compress: bool = True,
    extra_detail_fields: int = 0,
    spelling: str = "compact",
    flawed_per_file: int = 0,
) -> Dict[str, int]:
    """Write EventBridge-shaped failure events as JSON lines under root/dt=YYYY-MM-DD/.

    Events are spread evenly over days and files (part-NNNNN.json.gz, gzip level 1, or
    .json); exactly round(n_events * match_fraction) of them carry an id from `match_ids`,
    the rest one from `other_ids`. Returns events per day ("YYYY-MM-DD"), "total", "matched".
    `spelling`: "compact" (no spaces), or "json.dumps", as Python writes by default (", ",
    ": ", every non-ASCII character escaped), each event also naming its site in a language
    of its own, so every line holds such escapes.
    `flawed_per_file`: that many more lines in each file, in turn a broken line (a cut-off
    event), an event without `detail.productId`, and an awkwardly written event (`" : "`
    around its id's colon) whose id is in neither set; counted in "flawed", not in the days.
    """
    if spelling not in ("compact", "json.dumps"):
        raise ValueError(f"spelling: expected compact or json.dumps, got {spelling!r}")
    if days < 1 or files_per_day < 1 or n_events < 0:
        raise ValueError("days and files_per_day must be >= 1 and n_events >= 0")
    if not 0.0 <= match_fraction <= 1.0:
        raise ValueError(f"match_fraction: expected 0..1, got {match_fraction}")
    n_matched = round(n_events * match_fraction)
    if n_matched and not match_ids:
        raise ValueError("match_ids is empty but match_fraction > 0")
    if n_matched < n_events and not other_ids:
        raise ValueError("other_ids is empty but match_fraction < 1")

    root = Path(root)
    file_counts = _spread(n_events, days * files_per_day)
    counts: Dict[str, int] = {}
    written = matched_so_far = 0
    for index, count in enumerate(file_counts):
        day = start + timedelta(days=index // files_per_day)
        part = index % files_per_day
        # Cumulative rounding: per-file matches add up to exactly n_matched.
        matched = round((written + count) * match_fraction) - matched_so_far
        written += count
        matched_so_far += matched
        counts[day.isoformat()] = counts.get(day.isoformat(), 0) + count
        if count == 0:
            continue
        rng = random.Random(f"idstore-events:{seed}:{day.isoformat()}:{part}")
        lines = _event_lines(rng, day, count, matched, match_ids, other_ids)
        if extra_detail_fields:
            lines = _widened(rng, lines, extra_detail_fields)
        if spelling == "json.dumps":
            lines = [json.dumps({**json.loads(line), "site": rng.choice(_SITES)}) for line in lines]
        lines += _flawed_lines(lines[0], flawed_per_file)
        suffix = ".json.gz" if compress else ".json"
        path = root / f"dt={day.isoformat()}" / f"part-{part:05d}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = ("\n".join(lines) + "\n").encode("utf-8")
        if compress:
            with open(path, "wb") as raw:
                # mtime=0: the same seed gives byte-identical files.
                with gzip.GzipFile(
                    filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0
                ) as gz:
                    gz.write(payload)
        else:
            path.write_bytes(payload)
    counts["total"] = n_events
    counts["matched"] = n_matched
    counts["flawed"] = flawed_per_file * sum(1 for count in file_counts if count)
    log.info("wrote %d events (%d matching) over %d days under %s", n_events, n_matched, days, root)
    return counts


_SITES = ("Köln", "São Paulo", "東京", "Łódź", "Zürich", "Montréal")


def _flawed_lines(event: str, n: int) -> List[str]:
    """`n` lines made from one of the file's events: broken, id-less, awkward (see write_event_archive)."""
    parsed = json.loads(event)
    id_less = {**parsed, "detail": {k: v for k, v in parsed["detail"].items() if k != "productId"}}
    awkward = json.dumps({**parsed, "detail": {**parsed["detail"], "productId": "B0FLAWED00"}}, separators=(",", ":"))
    kinds = [event[: len(event) // 2], json.dumps(id_less), awkward.replace('"productId":', '"productId" : ')]
    return [kinds[i % len(kinds)] for i in range(n)]


def _spread(total: int, parts: int) -> List[int]:
    base, extra = divmod(total, parts)
    return [base + (1 if i < extra else 0) for i in range(parts)]


def _event_lines(
    rng: random.Random,
    day: date,
    count: int,
    matched: int,
    match_ids: Sequence[str],
    other_ids: Sequence[str],
) -> List[str]:
    product_ids = rng.choices(match_ids, k=matched) if matched else []
    if count > matched:
        product_ids += rng.choices(other_ids, k=count - matched)
    rng.shuffle(product_ids)
    clock = sorted(rng.choices(_CLOCK, k=count))
    fcs = rng.choices(FC_IDS, k=count)
    stages = rng.choices(STAGES, k=count)
    reasons = rng.choices(REASONS, k=count)
    attempts = rng.choices(_ATTEMPTS, k=count)
    bits = rng.getrandbits
    day_text = day.isoformat()
    template = _EVENT_TEMPLATE
    lines = []
    for i in range(count):
        h = "%032x" % bits(128)
        event_id = "%s-%s-%s-%s-%s" % (h[:8], h[8:12], h[12:16], h[16:20], h[20:])
        lines.append(
            template
            % (
                event_id,
                day_text,
                clock[i],
                product_ids[i],
                fcs[i],
                stages[i],
                reasons[i],
                attempts[i],
            )
        )
    return lines


def _widened(rng: random.Random, lines: List[str], extra: int) -> List[str]:
    """The same events with `extra` more string fields at the end of `detail`."""
    names = wide_detail_fields(extra)
    values = rng.choices(_WIDE_VALUES, k=len(lines) * extra)
    widened = []
    for i, line in enumerate(lines):
        fields = "".join(',"%s":"%s"' % (name, values[i * extra + j]) for j, name in enumerate(names))
        widened.append(line[:-2] + fields + "}}")
    return widened


def read_event_archive(root: Union[str, Path]) -> Iterator[dict]:
    """Every event under root/dt=*/part-* (gzip or plain JSON lines), in path order.

    Plain Python and independent of Spark: the tests' reference reader.
    """
    for path in sorted(Path(root).glob("dt=*/part-*")):
        yield from _read_lines(path)


def _read_lines(path: Path) -> Iterable[dict]:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)
