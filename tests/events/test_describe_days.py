"""The per-day output description the report carries, against the files on disk."""
from idstore.events.output import describe_days


def test_describe_days_counts_data_files_per_day_under_a_root_with_glob_characters(spark, tmp_path):
    root = tmp_path / "out{a,b}[1]*?"
    for day, names in {"2024-01-01": ["part-0.parquet", "part-1.parquet", "_SUCCESS", ".part-0.crc"],
                       "2024-01-03": ["part-0.parquet"]}.items():
        folder = root / f"dt={day}"
        folder.mkdir(parents=True)
        for i, name in enumerate(names):
            (folder / name).write_bytes(b"x" * (10 + i))
    got = describe_days(spark, str(root), "dt", ["2024-01-01", "2024-01-02", "2024-01-03"])
    assert got == {"2024-01-01": {"files": 2, "bytes": 21}, "2024-01-02": {"files": 0, "bytes": 0},
                   "2024-01-03": {"files": 1, "bytes": 10}}
