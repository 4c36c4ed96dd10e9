"""The one place a SparkSession is built, from explicit settings; its Hadoop conf; Spark work in a background thread."""
from typing import Callable, Generic, Mapping, Optional, TypeVar

from pyspark import InheritableThread
from pyspark.sql import SparkSession

from idstore.redaction import with_redaction_kept

T = TypeVar("T")

# Defaults every idstore job relies on; config [spark] settings win over them.
JOB_DEFAULTS = {
    # a re-run of one day replaces that day only
    "spark.sql.sources.partitionOverwriteMode": "dynamic",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}


def session_hadoop_conf(spark: SparkSession):
    """A copy of the session's Hadoop conf: it carries settings made with spark.conf.set (e.g. encryption).

    A copy costs about 4 ms over py4j, so a caller that opens several paths reuses one.
    """
    return spark._jsparkSession.sessionState().newHadoopConf()


def build_session(app_name: str, conf: Mapping[str, str], master: Optional[str] = None) -> SparkSession:
    """Build (or reuse) the session; `master` only for local runs, spark-submit sets its own."""
    builder = SparkSession.builder.appName(app_name)
    if master:
        builder = builder.master(master)
    # passwords never show in the UI, plans or event logs: [spark] can widen that, not narrow it
    for key, value in with_redaction_kept({**JOB_DEFAULTS, **conf}).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()


class InBackground(Generic[T]):
    """`work` run in a thread that keeps the starting thread's Spark job group and local properties."""

    def __init__(self, work: Callable[[], T]) -> None:
        self._value: Optional[T] = None
        self._error: Optional[BaseException] = None
        self._thread = InheritableThread(target=self._run, args=(work,), daemon=True)
        self._thread.start()

    def _run(self, work: Callable[[], T]) -> None:
        try:
            self._value = work()
        except BaseException as exc:  # noqa: BLE001 - handed to result(), which re-raises it
            self._error = exc

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> T:
        """What `work` returned, once it has; re-raises what it raised."""
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # work() returned it
