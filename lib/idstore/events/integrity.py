"""Naming the corrupt files of an archive: truncated gzip, damaged Parquet.

Spark 3.5's error for a truncated gzip file ("EOFException: Unexpected end of input
stream") does not say which file. When a read fails that way, `find_corrupt_files` checks
the candidate files in a Spark job, one task per group of files on the executors (the
bytes never pass through the driver), and returns each bad file with what is wrong.
It runs only after such a failure, so a healthy archive pays nothing for it.
"""
import logging
import re
import zlib
from typing import Dict, Iterator, Optional, Sequence

import pyarrow as pa
from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

CHECK_SCHEMA = pa.schema([("path", pa.string()), ("problem", pa.string())])

# What Hadoop's codecs, zlib and parquet-mr say about a damaged file (Spark 3.5 names none).
_CORRUPT_SIGNS = re.compile(
    r"EOFException|Unexpected end of input stream|ZipException|Not in GZIP format"
    r"|incorrect (header|data|length) check|invalid (block type|distance|stored block|code lengths)"
    r"|unknown compression method|is not a Parquet file|expected magic number"
    r"|ParquetDecodingException|can ?not read (class|value)",
    re.IGNORECASE,
)
_CHUNK = 1 << 20


def looks_like_corrupt_file(exc: BaseException) -> bool:
    """True when a failed read's error reads like a damaged input file (not, say, a lost node)."""
    return bool(_CORRUPT_SIGNS.search(str(exc)))


def needs_check(path: str) -> bool:
    """Only compressed and Parquet files can be damaged in a way that fails a whole read."""
    return path.endswith((".gz", ".gzip", ".parquet"))


def gzip_problem(data: bytes) -> Optional[str]:
    """Why `data` is not a complete gzip stream (one or more members), or None when it is."""
    if not data:
        return None  # an empty file holds no events and reads as none
    view = memoryview(data)
    offset = 0
    while offset < len(data):
        inflater = zlib.decompressobj(zlib.MAX_WBITS | 16)  # gzip header and trailer, CRC checked
        try:
            while offset < len(data) and not inflater.eof:
                chunk = view[offset: offset + _CHUNK]
                offset += len(chunk)
                inflater.decompress(chunk, _CHUNK)
                while inflater.unconsumed_tail and not inflater.eof:
                    inflater.decompress(inflater.unconsumed_tail, _CHUNK)
        except zlib.error as exc:
            return f"gzip: {exc}"
        if not inflater.eof:
            return "gzip: truncated (the stream ends before its last block and trailer)"
        # another member may follow (concatenated gzip); zero padding ends the file
        offset -= len(inflater.unused_data)
        if not bytes(view[offset:]).strip(b"\x00"):
            return None
    return None


def parquet_problem(data: bytes) -> Optional[str]:
    """Why `data` is not a readable Parquet file (magic numbers and footer), or None."""
    if len(data) < 12 or data[:4] != b"PAR1" or data[-4:] != b"PAR1":
        return "parquet: missing PAR1 magic (truncated or not Parquet)"
    try:
        import pyarrow.parquet as pq

        pq.ParquetFile(pa.BufferReader(data)).metadata  # noqa: B018 - parsing the footer is the check
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several kinds for a bad footer
        return f"parquet: unreadable footer: {exc}"
    return None


def file_problem(path: str, data: bytes) -> Optional[str]:
    if path.endswith((".gz", ".gzip")):
        return gzip_problem(data)
    if path.endswith(".parquet"):
        return parquet_problem(data)
    return None


def _check_batches(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        paths = batch.column(0).to_pylist()
        contents = batch.column(1)
        bad_paths, problems = [], []
        for i, path in enumerate(paths):
            problem = file_problem(path, contents[i].as_py())
            if problem:
                bad_paths.append(path)
                problems.append(problem)
        if bad_paths:
            yield pa.RecordBatch.from_pydict({"path": bad_paths, "problem": problems}, schema=CHECK_SCHEMA)


def find_corrupt_files(spark: SparkSession, paths: Sequence[str]) -> Dict[str, str]:
    """{path: problem} for the damaged files among `paths`, checked on the executors."""
    candidates = sorted(p for p in paths if needs_check(p))
    if not candidates:
        return {}
    log.info("checking %d compressed/Parquet input files for damage", len(candidates))
    conf = spark.conf
    key = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous = conf.get(key)
    # one file per Arrow batch: a task holds one file's bytes at a time, never 10,000 of them
    conf.set(key, "1")
    try:
        rows = (
            spark.read.format("binaryFile")
            .load(candidates)
            .select("path", "content")
            .mapInArrow(_check_batches, "path string, problem string")
            .collect()
        )
    finally:
        conf.set(key, previous)
    return {row.path: row.problem for row in rows}
