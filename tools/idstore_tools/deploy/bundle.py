"""Every file `idstore render` writes, by name: the requests of render, the job policy of iam,
and the CloudFormation template, which template builds from both.

It sits above render, iam and template so that none of them needs another in a circle:
naming, layout <- iam, render <- template <- bundle <- cli.
"""
import json
from pathlib import Path
from typing import Any, Dict, List, Optional

from idstore_tools.deploy import iam, layout, render, template
from idstore_tools.deploy.config import ToolingConfig


def render_all(config: ToolingConfig, conf_uri: str, version: Optional[str] = None,
               window: Optional[render.Window] = None) -> Dict[str, Any]:
    """{file name: JSON document} for `idstore render`; the filter runs of the steps, the cluster
    and the Serverless request read `window` (the state machines compute theirs at run time)."""
    files: Dict[str, Any] = {
        "emr-steps.json": render.emr_steps(config, conf_uri, version=version, window=window),
        "run-job-flow.json": render.run_job_flow_request(config, conf_uri, version=version, window=window),
        "state-machine.json": render.state_machine(config, conf_uri, version),
        "schedule.json": render.schedule_request(config),
        "iam-policy.json": iam.job_policy(config, version),
        "cloudformation.json": template.cloudformation_template(config, conf_uri, version),
    }
    if config.serverless.application_id:
        for job in layout.JOB_ORDER:
            files[f"serverless-start-job-run-{job}.json"] = render.start_job_run_request(config, job, conf_uri, version,
                                                                                        window)
        files["state-machine-serverless.json"] = render.serverless_state_machine(config, conf_uri, version)
    return files


def write_rendered(files: Dict[str, Any], out: Path) -> List[Path]:
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, document in sorted(files.items()):
        path = out / name
        path.write_text(json.dumps(document, indent=2) + "\n")
        written.append(path)
    return written
