"""Naming damaged input files: the byte-level checks, and the Spark job that runs them."""
import gzip
import io

import pyarrow as pa
import pyarrow.parquet as pq

from idstore.events.integrity import find_corrupt_files, gzip_problem, looks_like_corrupt_file, parquet_problem

PAYLOAD = b"".join(b'{"id": "e%d", "detail": {"productId": "P%d"}}\n' % (i, i % 97) for i in range(50000))


def test_a_whole_gzip_stream_passes_and_every_cut_of_it_fails():
    whole = gzip.compress(PAYLOAD)
    assert gzip_problem(whole) is None
    for cut in (10, len(whole) // 3, len(whole) - 9, len(whole) - 1):
        assert "truncated" in gzip_problem(whole[:cut])


def test_concatenated_gzip_members_and_zero_padding_pass():
    members = gzip.compress(PAYLOAD[:1000]) + gzip.compress(PAYLOAD[1000:])
    assert gzip_problem(members) is None
    assert gzip_problem(members + b"\x00" * 100) is None
    assert gzip_problem(b"") is None  # an empty file holds no events


def test_damaged_gzip_bytes_are_named_for_what_is_wrong():
    whole = bytearray(gzip.compress(PAYLOAD))
    assert "gzip" in gzip_problem(b"plain text, not gzip")
    whole[-6] ^= 0xFF  # the CRC32 trailer
    assert gzip_problem(bytes(whole)).startswith("gzip:")
    assert gzip_problem(gzip.compress(PAYLOAD) + b"trailing junk").startswith("gzip:")


def test_parquet_footer_check():
    buffer = io.BytesIO()
    pq.write_table(pa.table({"id": ["a", "b"]}), buffer)
    data = buffer.getvalue()
    assert parquet_problem(data) is None
    assert "magic" in parquet_problem(data[: len(data) - 20])
    assert parquet_problem(data[:4] + b"\x00" * 40 + data[-8:]).startswith("parquet:")


def test_corrupt_read_errors_are_told_from_other_failures():
    assert looks_like_corrupt_file(RuntimeError("java.io.EOFException: Unexpected end of input stream"))
    assert looks_like_corrupt_file(RuntimeError("java.util.zip.ZipException: Not in GZIP format"))
    assert looks_like_corrupt_file(RuntimeError("x.parquet is not a Parquet file. Expected magic number"))
    assert not looks_like_corrupt_file(RuntimeError("Container killed by YARN for exceeding memory limits"))


def test_the_spark_check_names_only_the_damaged_files(spark, tmp_path):
    folder = tmp_path / "dir with space" / "dt=2024-01-01"
    folder.mkdir(parents=True)
    good, cut, plain = folder / "good.json.gz", folder / "cut.json.gz", folder / "plain.json"
    good.write_bytes(gzip.compress(PAYLOAD))
    cut.write_bytes(gzip.compress(PAYLOAD)[:5000])
    plain.write_bytes(b"not checked: a plain file fails no whole read\n")
    names = [f"file:{p}" for p in (good, cut, plain)]

    found = find_corrupt_files(spark, names)

    assert list(found) == [f"file:{cut}"]
    assert "truncated" in found[f"file:{cut}"]
    assert spark.conf.get("spark.sql.execution.arrow.maxRecordsPerBatch") == "10000"
