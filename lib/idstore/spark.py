"""The one place a SparkSession is built, from explicit settings; its Hadoop conf; Spark work in a
background thread; the session settings and job tracking a run scopes to itself."""
from contextlib import contextmanager
from typing import Callable, Dict, Generic, Iterator, Mapping, Optional, TypeVar

from pyspark import InheritableThread
from pyspark.sql import SparkSession

from idstore.config import S3A_ENDPOINT, Config, is_aws_endpoint
from idstore.redaction import with_redaction_kept

T = TypeVar("T")

EXCLUDED_RULES_KEY = "spark.sql.adaptive.optimizer.excludedRules"
EMPTY_RELATION_RULE = "org.apache.spark.sql.execution.adaptive.AQEPropagateEmptyRelation"
MIN_SCAN_TASKS_KEY = "spark.sql.files.minPartitionNum"
SCAN_TASK_BYTES = 64 * 2**20

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


def session_conf(config: Config, base: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """A job's Spark settings: `base` (a local run's), S3A pointed where boto3 goes, the config's [spark].

    aws.endpoint_url is the one endpoint setting: S3A takes it too, unless [spark] names its own
    (the config's load refused one that disagrees), so s3:// never leaves for AWS while boto3
    talks to an emulator.
    """
    endpoint: Dict[str, str] = {}
    if config.aws.endpoint_url:
        endpoint = {S3A_ENDPOINT: config.aws.endpoint_url, f"{S3A_ENDPOINT}.region": config.aws.region}
        if not is_aws_endpoint(config.aws.endpoint_url):
            endpoint["spark.hadoop.fs.s3a.path.style.access"] = "true"  # an emulator has no bucket host names
    return {**(base or {}), **endpoint, **config.spark}


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


def keep_observed_metrics(spark: SparkSession) -> None:
    """Stop AQE from replacing a stage that yields no rows with an empty relation.

    That rewrite drops the plan's observed metrics with it (Spark 3.5): a day, or a whole
    run, that keeps no events would lose its read counts.
    """
    current = [r for r in (spark.conf.get(EXCLUDED_RULES_KEY, "") or "").split(",") if r]
    if EMPTY_RELATION_RULE not in current:
        spark.conf.set(EXCLUDED_RULES_KEY, ",".join([*current, EMPTY_RELATION_RULE]))


@contextmanager
def balanced_scan(spark: SparkSession) -> Iterator[Callable[[int], None]]:
    """Split the archive's scan into tasks that keep the last wave short, unless [spark] says otherwise.

    Yields `split(archive_bytes)`, which sets the split for an archive of that size (2 tasks
    a core until then). Spark packs files into tasks of up to 128 MB, but never fewer tasks
    than cores, and the last wave is where cores idle: 200 MB on 2 cores was 3 tasks, the
    third alone on a core (a third of the pass); 1.4 GB of 35 MB gzip files was 13 tasks of
    3 files and one of 1, two files' time on one core alone (2 s of a 28 s scan). So: tasks of
    about SCAN_TASK_BYTES, at least 2 and at most 8 a core (20 tasks of 2 files there: a 26 s
    scan), as a task is at least one file (gzip does not split) and each costs its start
    (16 tasks for 175 MB cost 0.8 s of a 3M-event run). Restored afterwards, so a session
    that runs other work after the filter keeps its own setting.
    """
    if spark.conf.get(MIN_SCAN_TASKS_KEY, None) is not None:
        yield lambda archive_bytes: None
        return
    cores = max(1, spark.sparkContext.defaultParallelism)

    def split(archive_bytes: int) -> None:
        tasks = min(max(archive_bytes // SCAN_TASK_BYTES, 2 * cores), 8 * cores)
        spark.conf.set(MIN_SCAN_TASKS_KEY, str(tasks))

    split(0)
    try:
        yield split
    finally:
        spark.conf.unset(MIN_SCAN_TASKS_KEY)


@contextmanager
def job_group(spark: SparkSession, group: str, description: str) -> Iterator[str]:
    """Tag this thread's Spark jobs with `group` (for the status tracker), then restore the old tags."""
    context = spark.sparkContext
    keys = ("spark.jobGroup.id", "spark.job.description")
    previous = [context.getLocalProperty(key) for key in keys]
    context.setJobGroup(group, description)
    try:
        yield group
    finally:
        for key, value in zip(keys, previous):
            context.setLocalProperty(key, value)


def rerun_stages(spark: SparkSession, group: str) -> int:
    """How many stages of the jobs in `group` ran more than one attempt."""
    tracker = spark.sparkContext.statusTracker()
    stages = set()
    for job_id in tracker.getJobIdsForGroup(group):
        job = tracker.getJobInfo(job_id)
        stages.update(job.stageIds if job else [])
    infos = [tracker.getStageInfo(stage_id) for stage_id in stages]
    return sum(1 for info in infos if info is not None and info.currentAttemptId > 0)


def spark_path(spark: SparkSession, uri: str) -> str:
    """A path as Spark's file index names it, from the URL-encoded form a scan gives a row's file."""
    jvm = spark.sparkContext._jvm
    return str(jvm.org.apache.hadoop.fs.Path(jvm.java.net.URI(uri)))
