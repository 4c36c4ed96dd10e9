"""The synthetic data generator, checked against plain-Python readings of what it wrote."""

import gzip
import json
import re
from collections import Counter
from datetime import date
from pathlib import Path

import pytest

from idstore_tools.local import LocalStack, connect_postgres
from idstore_tools.testing.datagen import (
    program_ids,
    read_event_archive,
    seed_program_products,
    write_event_archive,
)

ID_SHAPE = re.compile(r"^B0[0-9A-Z]{8}$")


def _plain_read(root):
    """Reference reader: every line of every file, with the dt= folder it sits in."""
    events = []
    for path in sorted(Path(root).rglob("part-*")):
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        for line in raw.decode("utf-8").splitlines():
            if line:
                events.append((path.parent.name, json.loads(line)))
    return events


def test_program_ids_are_unique_shaped_like_asins_and_deterministic():
    ids = program_ids("FFA", 20000, seed=3)
    assert len(set(ids)) == 20000
    assert all(ID_SHAPE.match(i) for i in ids)
    assert program_ids("FFA", 20000, seed=3) == ids
    assert program_ids("FFA", 20000, seed=4) != ids


def test_program_ids_are_disjoint_between_programs_whatever_the_seeds():
    sets = [
        set(program_ids(name, 20000, seed))
        for name, seed in [("FFA", 1), ("SNS", 1), ("PRIME", 2), ("X", 3)]
    ]
    for i, first in enumerate(sets):
        for second in sets[i + 1 :]:
            assert not first & second


def test_program_ids_rejects_counts_out_of_range():
    with pytest.raises(ValueError):
        program_ids("FFA", -1, seed=1)


@pytest.fixture(scope="module")
def postgres():
    with LocalStack() as info:
        conn = connect_postgres(info)
        yield conn
        conn.close()


def test_seeded_table_holds_exactly_the_returned_ids_per_program(postgres):
    programs = {"FFA": 3000, "SNS": 1500, "EMPTY": 0}
    ids = seed_program_products(postgres, programs, seed=11)
    assert {p: len(v) for p, v in ids.items()} == programs

    cursor = postgres.cursor()
    cursor.execute("select program, product_id, price, active from program_products")
    rows = cursor.fetchall()
    by_program = Counter(row[0] for row in rows)
    assert dict(by_program) == {"FFA": 3000, "SNS": 1500}
    assert {row[1] for row in rows if row[0] == "FFA"} == set(ids["FFA"])
    assert all(row[2] > 0 and row[3] is True for row in rows)

    # Re-seeding replaces the table rather than appending to it.
    seed_program_products(postgres, {"FFA": 10}, seed=11)
    cursor.execute("select count(*) from program_products")
    assert cursor.fetchone()[0] == 10


def test_event_archive_counts_and_match_fraction_match_a_plain_reading(tmp_path):
    match_ids = program_ids("FFA", 400, seed=5)
    other_ids = program_ids("OTHER", 900, seed=5)
    counts = write_event_archive(
        tmp_path,
        start=date(2024, 2, 28),
        days=3,
        n_events=10001,
        match_ids=match_ids,
        other_ids=other_ids,
        match_fraction=0.3,
        seed=5,
        files_per_day=2,
    )
    events = _plain_read(tmp_path)
    assert len(events) == counts["total"] == 10001
    product_ids = [e["detail"]["productId"] for _, e in events]
    matched = sum(1 for p in product_ids if p in set(match_ids))
    assert matched == counts["matched"] == round(10001 * 0.3)
    assert all(p in set(match_ids) or p in set(other_ids) for p in product_ids)

    per_day = Counter(folder for folder, _ in events)
    assert per_day == {"dt=2024-02-28": 3334, "dt=2024-02-29": 3334, "dt=2024-03-01": 3333}
    assert {f"dt={k}": v for k, v in counts.items() if k not in ("total", "matched", "flawed")} == per_day
    assert counts["flawed"] == 0
    assert all(e["time"].startswith(folder[3:]) for folder, e in events)
    parts = sorted(p.name for p in (tmp_path / "dt=2024-02-29").iterdir())
    assert parts == ["part-00000.json.gz", "part-00001.json.gz"]
    assert len({e["id"] for _, e in events}) == 10001

    first = events[0][1]
    assert set(first) == {"id", "time", "detail-type", "source", "account", "region", "detail"}
    assert first["detail-type"] == "Fulfillment Failure"
    assert set(first["detail"]) == {"productId", "fcId", "stage", "reason", "attempt"}
    assert list(read_event_archive(tmp_path)) == [e for _, e in events]


def test_event_archive_is_deterministic_and_can_be_uncompressed(tmp_path):
    args = {
        "start": date(2024, 1, 1),
        "days": 2,
        "n_events": 500,
        "match_ids": ["B0AAAAAAAA"],
        "other_ids": ["B0BBBBBBBB", "B0CCCCCCCC"],
        "match_fraction": 0.5,
        "seed": 9,
    }
    write_event_archive(tmp_path / "a", **args)
    write_event_archive(tmp_path / "b", **args)
    write_event_archive(tmp_path / "plain", compress=False, files_per_day=1, **args)
    for path in (tmp_path / "a").rglob("part-*"):
        assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes()
    assert sorted(p.name for p in (tmp_path / "plain" / "dt=2024-01-01").iterdir()) == [
        "part-00000.json"
    ]
    plain = _plain_read(tmp_path / "plain")
    assert len(plain) == 500
    assert sum(1 for _, e in plain if e["detail"]["productId"] == "B0AAAAAAAA") == 250


def test_event_archive_rejects_a_fraction_it_cannot_honour(tmp_path):
    with pytest.raises(ValueError):
        write_event_archive(tmp_path, date(2024, 1, 1), 1, 10, [], ["B0BBBBBBBB"], 0.5, seed=1)
    with pytest.raises(ValueError):
        write_event_archive(tmp_path, date(2024, 1, 1), 1, 10, ["B0AAAAAAAA"], [], 1.5, seed=1)


def test_the_json_dumps_spelling_holds_the_same_events_written_as_python_writes_them(tmp_path):
    ids, others = ["MATCH1", "MATCH2"], ["OTHER1", "OTHER2"]
    write_event_archive(tmp_path / "compact", date(2024, 3, 1), 2, 40, ids, others, 0.25, seed=5, files_per_day=2)
    write_event_archive(tmp_path / "dumps", date(2024, 3, 1), 2, 40, ids, others, 0.25, seed=5, files_per_day=2,
                        spelling="json.dumps")
    raw = [line for path in sorted((tmp_path / "dumps").glob("dt=*/part-*"))
           for line in gzip.decompress(path.read_bytes()).decode("ascii").splitlines()]
    assert len(raw) == 40 and all('"productId": "' in line and "\\u" in line for line in raw)
    dumps = [{k: v for k, v in event.items() if k != "site"} for event in read_event_archive(tmp_path / "dumps")]
    assert dumps == list(read_event_archive(tmp_path / "compact"))
    with pytest.raises(ValueError, match="spelling"):
        write_event_archive(tmp_path / "x", date(2024, 3, 1), 1, 1, ids, others, 0.0, seed=5, spelling="yaml")


def test_flawed_lines_are_one_broken_one_id_less_and_one_awkward_in_turn_in_every_file(tmp_path):
    counts = write_event_archive(tmp_path, date(2024, 4, 1), 2, 40, ["B0AAAAAAAA"], ["B0BBBBBBBB"], 0.5, seed=3,
                                 files_per_day=2, compress=False, flawed_per_file=4)
    assert counts["flawed"] == 4 * 4 and counts["total"] == 40
    for path in sorted(tmp_path.glob("dt=*/part-*.json")):
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == 10 + 4
        parsed = []
        for line in lines[-4:]:
            try:
                parsed.append(json.loads(line))
            except json.JSONDecodeError:
                parsed.append(None)
        assert parsed[0] is None and parsed[3] is None  # broken, in turn
        assert "productId" not in parsed[1]["detail"]
        assert parsed[2]["detail"]["productId"] == "B0FLAWED00" and '"productId" : "B0FLAWED00"' in lines[-2]
        assert all(json.loads(line)["detail"]["productId"] in ("B0AAAAAAAA", "B0BBBBBBBB") for line in lines[:-4])
