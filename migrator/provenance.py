"""Who ran a migration, from which code: the OS user, the git commit of the migrations' checkout (read from
`.git` itself: no git binary on a production host), and the CI run when the usual CI variables say so."""

import getpass
import os
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


def _git_dir(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / ".git"
        if candidate.is_dir():
            return candidate
        if candidate.is_file():  # a worktree or submodule: "gitdir: <path>"
            target = candidate.read_text(encoding="utf-8").partition("gitdir:")[2].strip()
            return (folder / target).resolve() if target else None
    return None


def _common_dir(git_dir: Path) -> Path:
    common = git_dir / "commondir"  # a worktree keeps its refs in the main repository
    return (git_dir / common.read_text(encoding="utf-8").strip()).resolve() if common.is_file() else git_dir


def _ref(git_dir: Path, ref: str) -> str:
    for where in (git_dir, _common_dir(git_dir)):
        loose = where / ref
        if loose.is_file():
            return loose.read_text(encoding="utf-8").strip()
        packed = where / "packed-refs"
        if packed.is_file():
            for line in packed.read_text(encoding="utf-8").splitlines():
                sha, _, name = line.partition(" ")
                if name.strip() == ref:
                    return sha
    return ""


def git_commit(folder: Path | None) -> str:
    """The commit checked out where `folder` lives, "" when it is not in a git checkout (a Docker image)."""
    if folder is None:
        return ""
    try:
        git_dir = _git_dir(Path(folder).resolve())
        if git_dir is None:
            return ""
        head = (git_dir / "HEAD").read_text(encoding="utf-8").strip()
        return _ref(git_dir, head[len("ref:"):].strip()) if head.startswith("ref:") else head
    except OSError:
        return ""


def provenance(migrations_folder: Path | None) -> dict[str, str]:
    """What every changelog entry carries: user, commit, and ci when there is one."""
    found = {"user": user(), "commit": git_commit(migrations_folder)}
    if run := ci_run():
        found["ci"] = run
    return found
