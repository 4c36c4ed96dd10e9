"""`idstore render|deploy|submit|validate`: ship the jobs to AWS and run them (README.md, "Run on EMR")."""
import argparse
import json
import logging
import sys
from datetime import date
from pathlib import Path
from typing import List, Optional, Sequence

from idstore.config import ConfigError
from idstore_tools.deploy import bundle, layout, render
from idstore_tools.deploy.config import ToolingConfig, load_tooling_config
from idstore_tools.deploy.preflight import refuse_bad_config

COMMANDS = ("render", "deploy", "submit", "validate")


def main(argv: Sequence[str]) -> int:
    args = list(argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: idstore {{{'|'.join(COMMANDS)}}} ...", file=sys.stderr)
        return 2
    command, rest = args[0], args[1:]
    parser = _parser(command)
    options = parser.parse_args(rest)
    logging.basicConfig(level=logging.INFO if options.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("botocore").setLevel(logging.WARNING)
    try:
        config = load_tooling_config(options.conf, options.overrides)
        if command != "validate":  # validate lists the same problems among its checks
            refuse_bad_config(config)
        handlers = {"render": _render, "deploy": _deploy, "submit": _submit, "validate": _validate}
        return handlers[command](config, options)
    except ConfigError as exc:
        print(f"idstore {command}: config error: {exc}", file=sys.stderr)
        return 2


def _parser(command: str) -> argparse.ArgumentParser:
    descriptions = {
        "render": "Write the EMR steps, RunJobFlow, Step Functions, EMR Serverless, Scheduler, IAM and "
                  "CloudFormation JSON for this config.",
        "deploy": "Upload dist/ (make package) and the config file to s3://deploy.bucket/deploy.prefix/<version>/.",
        "submit": "Add the steps to a running cluster, start a state-machine execution, "
                  "or start EMR Serverless job runs.",
        "validate": "Preflight: the table, the S3 locations, the source credentials, the deployed release; "
                    "exits 1 if any check fails.",
    }
    parser = argparse.ArgumentParser(prog=f"idstore {command}", description=descriptions[command])
    parser.add_argument("--config", "--conf", dest="conf", metavar="FILE", required=True,
                        help="TOML config, layered over conf/base.toml and idstore_tools/deploy/defaults.toml "
                             "(--conf: the old spelling, deprecated)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="override one config key (repeatable)")
    parser.add_argument("--version", help="release version (default: deploy.version, else this package's version)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what is done")
    if command in ("render", "submit", "validate"):
        parser.add_argument("--conf-uri", help="where the jobs read the config on AWS "
                                               "(default: the --conf file's name under the release's conf/)")
    if command in ("render", "submit"):
        parser.add_argument("--from", dest="start", type=date.fromisoformat, metavar="YYYY-MM-DD",
                            help="the filter's first day (default: the schedule.filter_days days before today, UTC)")
        parser.add_argument("--to", dest="end", type=date.fromisoformat, metavar="YYYY-MM-DD",
                            help="the filter's last day (default: yesterday, UTC, with schedule.filter_days)")
    if command == "render":
        parser.add_argument("--out", required=True, type=Path, metavar="DIR", help="folder for the JSON files")
    elif command == "deploy":
        parser.add_argument("--dist", default=Path("dist"), type=Path, help="what `make package` built (default dist)")
        parser.add_argument("--no-conf", action="store_true", help="do not upload the --conf file")
        parser.add_argument("--force", action="store_true", help="replace a different build already at that version")
    elif command == "submit":
        where = parser.add_mutually_exclusive_group(required=True)
        where.add_argument("--cluster-id", help="add the steps to this running EMR cluster")
        where.add_argument("--state-machine-arn", help="start an execution of this state machine")
        where.add_argument("--application-id", nargs="?", const="", metavar="ID",
                           help="start EMR Serverless job runs (default: serverless.application_id)")
        parser.add_argument("--jobs", default="sync,filter",
                            help="comma-separated jobs for --cluster-id/--application-id (default sync,filter; "
                                 "Serverless runs them side by side)")
        parser.add_argument("--input", default="{}", help="state-machine input JSON, e.g. "
                                                          '\'{"window": {"from": "2024-05-01", "to": "2024-05-07"}}\'')
        parser.add_argument("--name", help="execution name (default: generated)")
    elif command == "validate":
        parser.add_argument("--check-source", action="store_true",
                            help="also run the source query (WHERE 1 = 0) over JDBC on a local SparkSession")
    return parser


def _conf_uri(config: ToolingConfig, options) -> str:
    if getattr(options, "conf_uri", None):
        return options.conf_uri
    if options.conf.startswith("s3://"):
        return options.conf
    return layout.conf_uri(config, Path(options.conf).name, options.version)


def _window(config: ToolingConfig, options) -> Optional[render.Window]:
    window = render.filter_window(config, options.start, options.end)
    if window is None:
        print("note: no window (schedule.filter_days = 0, no --from/--to): the filter runs read every day",
              file=sys.stderr)
    return window


def _render(config: ToolingConfig, options) -> int:
    files = bundle.render_all(config, _conf_uri(config, options), options.version, _window(config, options))
    for path in bundle.write_rendered(files, options.out):
        print(path)
    if not config.serverless.application_id:
        print("(no EMR Serverless files: serverless.application_id is not set)", file=sys.stderr)
    return 0


def _deploy(config: ToolingConfig, options) -> int:
    from idstore_tools.deploy.package import PackageError
    from idstore_tools.deploy.publish import DeployError, deploy

    conf_files: List[Path] = [] if options.no_conf or options.conf.startswith("s3://") else [Path(options.conf)]
    try:
        result = deploy(options.dist, config, options.version, conf_files, force=options.force)
    except (DeployError, PackageError) as exc:
        print(f"idstore deploy: {exc}", file=sys.stderr)
        return 1
    print(f"release: {result.release_uri} ({len(result.uploaded)} files uploaded, {len(result.unchanged)} unchanged)")
    for uri in result.conf_uris:
        print(f"config:  {uri}")
    if result.version != layout.deployed_version(config, options.version):
        print(f"note: render and submit with --version {result.version} (or set deploy.version) to run this release")
    return 0


def _submit(config: ToolingConfig, options) -> int:
    from idstore_tools.deploy import submit

    jobs = [job.strip() for job in options.jobs.split(",") if job.strip()]
    unknown = [job for job in jobs if job not in layout.JOB_ORDER]
    if unknown or not jobs:
        print(f"idstore submit: --jobs: expected sync and/or filter, got {options.jobs!r}", file=sys.stderr)
        return 2
    if options.cluster_id:
        window = _window(config, options) if "filter" in jobs else None
        for step_id in submit.add_steps(config, _conf_uri(config, options), options.cluster_id, jobs, options.version,
                                        window):
            print(step_id)
    elif options.state_machine_arn:
        try:
            run_input = json.loads(options.input)
        except ValueError as exc:
            print(f"idstore submit: --input is not JSON: {exc}", file=sys.stderr)
            return 2
        print(submit.start_execution(config.run, options.state_machine_arn, run_input, options.name))
    else:
        application = options.application_id or config.serverless.application_id
        if not application:
            print("idstore submit: no application: pass --application-id ID or set serverless.application_id",
                  file=sys.stderr)
            return 2
        window = _window(config, options) if "filter" in jobs else None
        for run_id in submit.start_job_runs(config, _conf_uri(config, options), jobs, application, options.version,
                                            window):
            print(run_id)
    return 0


def _validate(config: ToolingConfig, options) -> int:
    from idstore_tools.deploy.validate import checklist, run_checks

    conf_uri = _conf_uri(config, options) if config.deploy.bucket else None
    checks = run_checks(config, check_source=options.check_source, version=options.version, conf_uri=conf_uri)
    print(checklist(checks))
    return 0 if all(check.ok for check in checks) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
