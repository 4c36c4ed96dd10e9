"""idstore's jar: JVM functions for the steps where Spark's built-ins cost the most.

The jar (jvm/src, built by `make setup` with scripts/build-jvm.sh) lives in this package, so
the wheel the bootstrap action installs carries it to every node. A run adds it to its session
(ADD JAR: the driver loads it, the executors fetch it from the driver) and registers its
functions; nothing has to be on a class path when the JVM starts, locally or on EMR.
"""
from pathlib import Path

from pyspark.sql import SparkSession

JAR = Path(__file__).parent / "jars" / "idstore-jvm.jar"
# idstore_plain_value(line, key): the plainly written id of a raw JSON line, or null
PLAIN_VALUE = "idstore_plain_value"
_PLAIN_VALUE_CLASS = "idstore.jvm.PlainValue"


def plain_value_function(spark: SparkSession) -> bool:
    """Register PLAIN_VALUE in `spark` (once); False when the jar is missing."""
    if spark.catalog.functionExists(PLAIN_VALUE):
        return True
    if not JAR.is_file():
        return False
    spark.sql(f"ADD JAR '{JAR}'")
    # loaded through the session's jar class loader, which ADD JAR extends: the thread's
    # context loader, which registerJavaFunction would use, is not it outside the main thread
    session = spark._jsparkSession
    function = session.sharedState().jarClassLoader().loadClass(_PLAIN_VALUE_CLASS).newInstance()
    session.udf().register(PLAIN_VALUE, function, spark._jvm.org.apache.spark.sql.types.DataTypes.StringType)
    return True
