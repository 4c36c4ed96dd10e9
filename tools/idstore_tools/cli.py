"""The `idstore` command: run the jobs on a local SparkSession, and manage the local stack."""
import sys
from typing import Optional, Sequence

USAGE = """usage: idstore COMMAND [options]
       idstore --version

commands:
  sync     run the sync job on a local SparkSession (same flags as jobs/sync_product_ids.py)
  filter   run the filter job on a local SparkSession (same flags as jobs/filter_failure_events.py)
  local    start, stop or inspect the local stack (PostgreSQL + moto): idstore local up|down|status|seed
  render   write the EMR steps, RunJobFlow, Step Functions, Scheduler, IAM and CloudFormation JSON from a config
  deploy   upload dist/ to a versioned S3 prefix
  submit   add the steps to a cluster, start a state-machine execution or an EMR Serverless job run
  validate preflight: table, S3 paths, secret and (optionally) the JDBC source, as a checklist

`idstore COMMAND --help` tells more.
"""


def version() -> str:
    from idstore import __version__

    return f"idstore {__version__}"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print(USAGE, file=sys.stderr)  # a usage error: what was asked for is not there
        return 2
    if args[0] in ("-h", "--help"):
        print(USAGE)
        return 0
    if args[0] in ("-V", "--version"):
        print(version())
        return 0
    command, rest = args[0], args[1:]
    if command in ("sync", "filter"):
        from idstore.pipeline.entry import run_job
        from idstore_tools.local_submit import local_spark_conf

        return run_job(command, rest, master="local[*]", base_spark_conf=local_spark_conf(),
                       prog=f"idstore {command}")
    if command == "local":
        from idstore_tools.local.cli import main as local_main

        return local_main(rest)
    if command in ("render", "deploy", "submit", "validate"):
        from idstore_tools.deploy.cli import main as deploy_main

        return deploy_main([command, *rest])
    print(f"idstore: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
