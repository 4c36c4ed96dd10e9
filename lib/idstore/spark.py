"""The one place a SparkSession is built, from explicit settings."""
from typing import Mapping, Optional

from pyspark.sql import SparkSession

from idstore.secrets import with_redaction_kept

# Defaults every idstore job relies on; config [spark] settings win over them.
JOB_DEFAULTS = {
    # a re-run of one day replaces that day only
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def build_session(app_name: str, conf: Mapping[str, str], master: Optional[str] = None) -> SparkSession:
    """Build (or reuse) the session; `master` only for local runs, spark-submit sets its own."""
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    # passwords never show in the UI, plans or event logs: [spark] can widen that, not narrow it
    for key, value in with_redaction_kept({**JOB_DEFAULTS, **conf}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()
