"""What the filter makes of each event: ok, malformed or missing_id, as a column every pass carries."""
from typing import Optional

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from idstore.events.reader import CORRUPT

STATUS = "_idstore_status"
OK = "ok"
MALFORMED = "malformed"  # an unparseable or off-schema line
MISSING_ID = "missing_id"  # a null, empty or blank id
BAD = (MALFORMED, MISSING_ID)  # what the quarantine keeps, each its reason and count


def status_of(event_id: Column, corrupt: Optional[Column]) -> Column:
    """OK, MALFORMED or MISSING_ID; `corrupt` is the parser's raw line for a malformed one, else null."""
    status = F.when(F.lit(False), F.lit(None))
    if corrupt is not None:
        status = status.when(corrupt.isNotNull(), F.lit(MALFORMED))
    status = status.when(event_id.isNull() | (F.trim(event_id.cast("string")) == ""), F.lit(MISSING_ID))
    return F.coalesce(status, F.lit(OK))


def with_status(event_id: Column):
    """Transform: each event tagged in STATUS."""

    def transform(df: DataFrame) -> DataFrame:
        corrupt = F.col(CORRUPT) if CORRUPT in df.columns else None
        return df.withColumn(STATUS, status_of(event_id, corrupt))

    return transform
