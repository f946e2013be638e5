"""Who ran a migration, from which code: the OS user, the git commit of the migrations' checkout (when git is
there to say), and the CI run when the usual CI variables say so."""

import getpass
import os
import subprocess
from pathlib import Path

# The CI systems whose variables name a run, and how: (the variable that says it is this CI, how to name the run)
_CI_RUNS = (
    ("GITHUB_ACTIONS", lambda e: f"{e.get('GITHUB_SERVER_URL', 'https://github.com')}/{e.get('GITHUB_REPOSITORY', '?')}"
                                 f"/actions/runs/{e.get('GITHUB_RUN_ID', '?')}"),
    ("GITLAB_CI", lambda e: e.get("CI_JOB_URL") or f"gitlab pipeline {e.get('CI_PIPELINE_ID', '?')}"),
    ("JENKINS_URL", lambda e: e.get("BUILD_URL") or f"jenkins build {e.get('BUILD_NUMBER', '?')}"),
    ("CIRCLECI", lambda e: e.get("CIRCLE_BUILD_URL") or "circleci"),
    ("BUILDKITE", lambda e: e.get("BUILDKITE_BUILD_URL") or "buildkite"),
    ("TF_BUILD", lambda e: f"azure pipelines build {e.get('BUILD_BUILDID', '?')}"),
)


def user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container user with no name
        return str(os.getuid()) if hasattr(os, "getuid") else ""


def ci_run(environ=os.environ) -> str:
    for variable, name in _CI_RUNS:
        if environ.get(variable):
            return name(environ)
    return "CI" if environ.get("CI", "").lower() in {"1", "true", "yes"} else ""


def git_commit(folder: Path | None) -> str:
    """The commit checked out where `folder` lives; "" outside a git checkout, or without git (a Docker image)."""
    if folder is None:
        return ""
    try:
        found = subprocess.run(["git", "-c", "safe.directory=*", "rev-parse", "--verify", "--quiet", "HEAD"],
                               cwd=folder, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return found.stdout.strip() if found.returncode == 0 else ""


def provenance(migrations_folder: Path | None) -> dict[str, str]:
    """What every changelog entry carries: user, commit, and ci when there is one."""
    found = {"user": user(), "commit": git_commit(migrations_folder)}
    if run := ci_run():
        found["ci"] = run
    return found
