"""The guide's Docker and Windows set-ups: the compose file, the Dockerfile and the wrappers of scripts/.

No Docker engine and no Windows here, so the wrappers run for real against stand-ins:
- the .sh scripts with tests/fakes/docker first on PATH; what would run inside the app container
  (`docker exec flowise-proxy-test python ...`) runs here with the test venv's Python against the
  test server, so the migrations really happen;
- the .bat scripts under Wine's cmd, with tests/fakes/windows/{python,docker}.bat first on its PATH.
"""

import fcntl
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values
from pymongo import MongoClient
from pymongo.uri_parser import parse_uri

from conftest import REPO, Result
from sample_messages import chat_messages

SCRIPTS = REPO / "scripts"
FAKES = REPO / "tests" / "fakes"
MIGRATION = "add_metadata_to_chat_messages"
RUNNER_IN_CONTAINER = "docker exec -i flowise-proxy-test python migrations/run_migrations.py"


def migrated(db) -> bool:
    """The migration really ran on this test's database, and the changelog says so."""
    return (db.chat_messages.count_documents({"metadata": {"$exists": False}}) == 0
            and db.migrations_changelog.count_documents({"name": MIGRATION, "state": "applied"}) == 1)


# ----- docker-compose.test.yml, Dockerfile, .dockerignore -----

@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker-compose.test.yml").read_text())


def test_compose_mongodb_test_is_a_pinned_mongo_with_a_health_check(compose):
    mongo = compose["services"]["mongodb-test"]
    assert re.fullmatch(r"mongo:\d+\.\d+", mongo["image"])
    assert mongo["container_name"] == "mongodb-test"
    assert mongo["ports"] == ["27020:27017"]
    assert mongo["environment"] == {"MONGO_INITDB_ROOT_USERNAME": "admin", "MONGO_INITDB_ROOT_PASSWORD": "password",
                                    "MONGO_INITDB_DATABASE": "flowise_proxy_test"}
    volume = mongo["volumes"][0].split(":")
    assert volume[1] == "/data/db" and volume[0] in compose["volumes"]  # a named volume
    check = " ".join(mongo["healthcheck"]["test"])
    assert check.startswith("CMD") and "mongosh" in check and "ping" in check


def test_compose_app_is_built_here_and_waits_for_a_healthy_mongodb(compose):
    app = compose["services"]["flowise-proxy-test"]
    assert app["container_name"] == "flowise-proxy-test"
    assert app["build"] == {"context": ".", "dockerfile": "Dockerfile"}
    assert app["environment"] == {
        "MONGODB_URL": "mongodb://admin:password@mongodb-test:27017/flowise_proxy_test?authSource=admin",
        "MONGODB_DATABASE_NAME": "flowise_proxy_test"}
    assert app["depends_on"] == {"mongodb-test": {"condition": "service_healthy"}}


def test_env_test_points_at_the_mongodb_test_container(compose):
    """What run-migrations.bat/.sh and the app in VS Code use: the container's published port."""
    mongo = compose["services"]["mongodb-test"]
    settings = dotenv_values(REPO / ".env.test")
    url = parse_uri(settings["MONGODB_URL"])
    assert url["nodelist"] == [("localhost", int(mongo["ports"][0].split(":")[0]))]
    assert (url["username"], url["password"]) == (mongo["environment"]["MONGO_INITDB_ROOT_USERNAME"],
                                                  mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"])
    assert settings["MONGODB_DATABASE_NAME"] == mongo["environment"]["MONGO_INITDB_DATABASE"]


def test_compose_file_is_valid_for_docker_compose():
    """`docker-compose config` (Compose v1, Debian's package) validates without a Docker engine."""
    if not shutil.which("docker-compose"):
        pytest.skip("docker-compose not installed (scripts/install-test-tools.sh installs it as root with apt-get)")
    completed = subprocess.run(["docker-compose", "-f", "docker-compose.test.yml", "config", "--quiet"],
                               cwd=REPO, capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr


def dockerfile_instructions() -> list[tuple[str, str]]:
    lines = [line.strip() for line in (REPO / "Dockerfile").read_text().replace("\\\n", " ").splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def test_dockerfile_slim_python_cached_requirements_non_root_user_app_as_command():
    steps = dockerfile_instructions()
    order = [f"{op} {arg}" for op, arg in steps]
    assert steps[0] == ("FROM", "python:3.11-slim")
    assert ("WORKDIR", "/app") in steps
    requirements = order.index("COPY requirements.txt .")
    assert order[requirements + 1] == "RUN pip install -r requirements.txt"
    first_source = min(i for i, (op, arg) in enumerate(steps) if op == "COPY" and "requirements" not in arg)
    assert requirements < first_source  # a change of the code does not reinstall the requirements
    user = [arg for op, arg in steps if op == "USER"]
    assert user and user[-1] not in {"root", "0"}
    assert steps[-1] == ("CMD", '["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]')


def test_dockerignore_keeps_local_state_and_secrets_out_of_the_build():
    ignored = set((REPO / ".dockerignore").read_text().split())
    assert {".git", ".venv", ".localdb", ".pytest_cache", "backups", ".env", "**/__pycache__"} <= ignored


def test_the_files_the_dockerfile_copies_are_enough_to_migrate_and_serve(db, env, tmp_path):
    """A copy of only what the image gets: the runner migrates (as `docker exec` would) and the app answers."""
    image = tmp_path / "app"
    image.mkdir()
    for source, target in (arg.split() for op, arg in dockerfile_instructions() if op == "COPY"):
        if (REPO / source).is_dir():
            shutil.copytree(REPO / source, image / target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(REPO / source, image / target)
    db.chat_messages.insert_many(chat_messages(3))

    migrate = subprocess.run([sys.executable, "migrations/run_migrations.py", "--all"], cwd=image, env=env,
                             capture_output=True, text=True, timeout=120)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert migrated(db)

    serve = subprocess.run([sys.executable, "-c", (
        "import os, app.main, fastapi.testclient as t\n"
        "print(os.path.abspath(app.main.__file__))\n"
        "with t.TestClient(app.main.app) as client: print(client.get('/health').status_code)"
    )], cwd=image, env=env, capture_output=True, text=True, timeout=60)
    assert serve.stdout.split() == [str(image / "app" / "main.py"), "200"], serve.stdout + serve.stderr


# ----- the .sh wrappers, with a fake docker -----

@pytest.fixture(scope="session")
def path_without_docker(tmp_path_factory) -> str:
    """This PATH with docker and docker-compose hidden: no test may reach a real one."""
    hidden = {"docker", "docker-compose"}
    folders = []
    for i, folder in enumerate(os.environ["PATH"].split(os.pathsep)):
        if not any(os.path.lexists(os.path.join(folder, name)) for name in hidden):
            folders.append(folder)
            continue
        shadow = tmp_path_factory.mktemp(f"path{i}")
        for entry in os.scandir(folder):
            if entry.name not in hidden:
                (shadow / entry.name).symlink_to(entry.path)
        folders.append(str(shadow))
    return os.pathsep.join(folders)


class FakeDocker:
    """tests/fakes/docker on PATH (as docker, and as docker-compose on request) and the calls it saw."""

    def __init__(self, env: dict, path: str, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        (self.bin / "docker").symlink_to(FAKES / "docker")
        self.log = tmp_path / "docker.log"
        self.cwd = tmp_path  # not the repo: the scripts find it themselves
        self.env = {**env, "PATH": f"{self.bin}{os.pathsep}{path}", "FAKE_DOCKER_LOG": str(self.log),
                    "FAKE_DOCKER_PYTHON": sys.executable, "MONGO_READY_INTERVAL": "0.05"}

    def add_compose_v1(self) -> None:
        (self.bin / "docker-compose").symlink_to(FAKES / "docker")

    def run(self, script: str, *args: str, input: str = "", **env: str) -> Result:
        completed = subprocess.run([str(SCRIPTS / script), *args], env={**self.env, **env}, cwd=self.cwd,
                                   input=input, capture_output=True, text=True, timeout=120)
        return Result(completed)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def docker(env, path_without_docker, tmp_path) -> FakeDocker:
    return FakeDocker(env, path_without_docker, tmp_path)


COMPOSE = f"docker compose -f {REPO}/docker-compose.test.yml"
HEALTH = "docker inspect -f {{.State.Health.Status}} mongodb-test"
RUNNING = "docker inspect -f {{.State.Running}} flowise-proxy-test"


def test_rebuild_docker_test_rebuilds_waits_for_mongodb_then_migrates_in_the_app(docker, db):
    db.chat_messages.insert_many(chat_messages(5, with_metadata_every=0))

    result = docker.run("rebuild-docker-test.sh", FAKE_DOCKER_HEALTHY_AFTER="3")

    assert result.code == 0, result
    assert docker.calls() == [
        "docker info", "docker compose version",
        f"{COMPOSE} down -v --remove-orphans", f"{COMPOSE} build", f"{COMPOSE} up -d",
        HEALTH, HEALTH, HEALTH,
        RUNNING, f"{RUNNER_IN_CONTAINER} --all",
    ]
    assert migrated(db)
    assert "mongodb-test is healthy" in result.stdout and "test stack ready" in result.stdout


def test_rebuild_docker_test_gives_up_when_mongodb_is_not_ready(docker):
    started = time.monotonic()
    result = docker.run("rebuild-docker-test.sh", FAKE_DOCKER_MODE="starting", MONGO_READY_TIMEOUT="1")

    assert result.code == 5, result
    assert "MongoDB not ready after 1 s (mongodb-test: starting)" in result.stderr
    assert "docker logs mongodb-test" in result.stderr
    assert not any(call.startswith("docker exec") for call in docker.calls())
    assert time.monotonic() - started < 10


def test_rebuild_docker_test_stops_at_a_failing_compose_step_with_its_exit_code(docker):
    result = docker.run("rebuild-docker-test.sh", FAKE_DOCKER_FAIL="build")

    assert result.code == 17, result
    assert docker.calls()[-1] == f"{COMPOSE} build"


def test_rebuild_docker_test_falls_back_to_docker_compose_v1(docker, db):
    docker.add_compose_v1()

    result = docker.run("rebuild-docker-test.sh", "--status", FAKE_DOCKER_COMPOSE="v1")

    assert result.code == 0, result
    v1 = f"docker-compose -f {REPO}/docker-compose.test.yml"
    assert [c for c in docker.calls() if "compose" in c] == [
        "docker compose version", "docker-compose version",
        f"{v1} down -v --remove-orphans", f"{v1} build", f"{v1} up -d"]
    assert docker.calls()[-1] == f"{RUNNER_IN_CONTAINER} --status"


def test_without_any_compose_the_scripts_say_what_to_install(docker):
    result = docker.run("rebuild-docker-test.sh", FAKE_DOCKER_COMPOSE="v1")

    assert result.code == 2, result
    assert "Docker Compose not found" in result.stderr


@pytest.mark.parametrize("script", ["rebuild-docker-test.sh", "rebuild-docker-dbonly.sh", "run-migrations-docker.sh"])
def test_without_docker_the_scripts_say_so(docker, path_without_docker, script):
    result = docker.run(script, PATH=path_without_docker)

    assert result.code == 2, result
    assert "error: docker not found: install Docker" in result.stderr


def test_a_docker_engine_that_does_not_answer_is_named(docker):
    result = docker.run("run-migrations-docker.sh", FAKE_DOCKER_MODE="no-engine")

    assert result.code == 2, result
    assert "the Docker engine does not answer" in result.stderr


def test_run_migrations_docker_passes_the_arguments_through(docker, db):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))

    status = docker.run("run-migrations-docker.sh", "--status")
    assert status.code == 0, status
    assert MIGRATION in status.stdout and not migrated(db)

    applied = docker.run("run-migrations-docker.sh", "--migration", MIGRATION)
    assert applied.code == 0, applied
    assert migrated(db)
    assert [c for c in docker.calls() if c.startswith("docker exec")] == [
        f"{RUNNER_IN_CONTAINER} --status", f"{RUNNER_IN_CONTAINER} --migration {MIGRATION}"]


def test_run_migrations_docker_returns_the_runners_exit_code(docker, db):
    result = docker.run("run-migrations-docker.sh", "--migration", "no_such_migration")

    assert result.code == 2, result  # the runner's "usage" exit code, through docker exec and the script
    assert "unknown migration 'no_such_migration'" in result.output


def test_run_migrations_docker_needs_the_app_container_running(docker):
    result = docker.run("run-migrations-docker.sh", FAKE_DOCKER_MODE="not-running")

    assert result.code == 5, result
    assert "container flowise-proxy-test is not running" in result.stderr
    assert "scripts/rebuild-docker-test.sh" in result.stderr
    assert docker.calls() == ["docker info", RUNNING]


@pytest.mark.parametrize("answer", ["yes\n", "Y\n"])
def test_rebuild_docker_dbonly_recreates_mongodb_then_migrates_on_yes(docker, db, answer):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))

    result = docker.run("rebuild-docker-dbonly.sh", input=answer)

    assert result.code == 0, result
    assert docker.calls() == ["docker info", "docker compose version",
                              f"{COMPOSE} up -d --force-recreate mongodb-test", HEALTH]
    assert "Run migrations now? (yes/no)" in result.stdout
    assert migrated(db)  # by run-migrations.sh, with the local Python: MONGODB_URL of the env beats .env.test


@pytest.mark.parametrize("answer", ["no\n", ""])
def test_rebuild_docker_dbonly_leaves_the_migrations_on_no_or_no_answer(docker, db, answer):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))

    result = docker.run("rebuild-docker-dbonly.sh", input=answer)

    assert result.code == 0, result
    assert "not running the migrations: run scripts/run-migrations.sh" in result.stdout
    assert db.chat_messages.count_documents({"metadata": {"$exists": True}}) == 0


def test_rebuild_docker_dbonly_gives_up_when_mongodb_is_not_ready(docker):
    result = docker.run("rebuild-docker-dbonly.sh", input="yes\n", FAKE_DOCKER_MODE="starting",
                        MONGO_READY_TIMEOUT="1")

    assert result.code == 5, result
    assert "MongoDB not ready" in result.stderr and "Run migrations now?" not in result.stdout


def test_run_migrations_sh_reads_env_test_passes_arguments_and_exit_codes(docker, db, env):
    db.chat_messages.insert_many(chat_messages(3, with_metadata_every=0))

    # MONGODB_URL from the environment (the test server), the database name from .env.test.
    status = docker.run("run-migrations.sh", "--status", "--json", MONGODB_DATABASE_NAME="")
    assert status.code == 0, status
    assert "database flowise_proxy_test at" in status.stderr

    assert docker.run("run-migrations.sh", "--migration", "no_such_migration").code == 2
    applied = docker.run("run-migrations.sh")  # default: --all
    assert applied.code == 0, applied
    assert migrated(db)
    assert docker.calls() == []  # no Docker in this path


# ----- the .bat wrappers, under Wine's cmd -----

WINE_PREFIX = REPO / ".localdb" / "wine"  # made once per machine (about 3 s, 700 MB), git-ignored


def windows_path(path: Path) -> str:
    return "Z:" + str(path).replace("/", "\\")  # Wine's Z: drive is /


@pytest.fixture(scope="session")
def wine_env() -> dict:
    if not shutil.which("wine"):
        pytest.skip("Wine is not installed: scripts/install-test-tools.sh installs it when run as root with apt-get "
                    "(see .localdb/test-tools.log)")
    env = {**os.environ, "WINEPREFIX": str(WINE_PREFIX), "WINEDEBUG": "-all",
           "WINEDLLOVERRIDES": "mscoree,mshtml,winemenubuilder.exe=d"}  # no Mono/Gecko dialogs, no menu entries
    quiet = dict(env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    WINE_PREFIX.mkdir(parents=True, exist_ok=True)
    with open(WINE_PREFIX.parent / "wine.lock", "w") as lock:  # test runs in parallel share the prefix
        fcntl.flock(lock, fcntl.LOCK_EX)
        # Start Wine's server and system processes here, detached from any pipe, and keep them until
        # 30 s after the last program: started by a test's `wine`, they would hold its output pipes
        # open and cost each test a second. The first use of the prefix also creates it.
        subprocess.run(["wineserver", "-p30"], **quiet)
        subprocess.run(["wine", "cmd", "/c", "exit"], **quiet, timeout=300, check=True)
    return env


class Cmd:
    """Runs scripts\\*.bat with `wine cmd /c`, the fake python.bat and docker.bat first on its PATH."""

    def __init__(self, wine_env: dict, tmp_path: Path):
        self.log = tmp_path / "calls.log"
        self.cwd = tmp_path
        self.env = {**wine_env, "FAKE_LOG": windows_path(self.log),
                    "WINEPATH": windows_path(FAKES / "windows"), "MONGO_READY_TIMEOUT": "60"}

    def without_fakes(self) -> str:
        """A WINEPATH with neither python nor docker (an empty WINEPATH makes Wine's cmd find anything)."""
        empty = self.cwd / "empty"
        empty.mkdir(exist_ok=True)
        return windows_path(empty)

    def run(self, script: str, *args: str, input: str = "", **env: str) -> Result:
        completed = subprocess.run(["wine", "cmd", "/c", windows_path(SCRIPTS / script), *args],
                                   env={**self.env, **env}, cwd=self.cwd, input=input,
                                   capture_output=True, text=True, timeout=120)
        return Result(completed)

    def calls(self, program: str = "") -> list[str]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [line.strip() for line in lines if line.startswith(program)]

    def runs(self) -> list[str]:
        """The runs of the runner by python.bat: `<arguments> ENV_FILE=<file>`."""
        runner = f'python "{windows_path(REPO)}\\migrations\\run_migrations.py" '
        return [line.removeprefix(runner) for line in self.calls("python") if line.startswith(runner)]


@pytest.fixture
def cmd(wine_env, tmp_path) -> Cmd:
    return Cmd(wine_env, tmp_path)


ENV_TEST = f"ENV_FILE={windows_path(REPO)}\\.env.test"
COMPOSE_FILE = f"{windows_path(REPO)}\\docker-compose.test.yml"
DOCKER_BAT_CALLS = ["docker --version", "docker info", "docker compose version",
                    f'docker compose -f "{COMPOSE_FILE}" up -d --force-recreate mongodb-test',
                    'docker inspect -f "{{.State.Health.Status}}" mongodb-test']


def test_run_migrations_bat_runs_all_with_env_test_from_any_folder(cmd):
    result = cmd.run("run-migrations.bat")

    assert result.code == 0, result
    assert cmd.runs() == [f"--all {ENV_TEST}"]


def test_run_migrations_bat_passes_the_arguments_through(cmd):
    assert cmd.run("run-migrations.bat", "--status").code == 0
    assert cmd.run("run-migrations.bat", "--migration", MIGRATION, "--dry-run").code == 0

    assert cmd.runs() == [f"--status {ENV_TEST}", f"--migration {MIGRATION} --dry-run {ENV_TEST}"]


def test_run_migrations_bat_fails_when_the_runner_fails(cmd):
    result = cmd.run("run-migrations.bat", "--verify", FAKE_PYTHON_EXIT="4")

    # Windows returns the runner's 4 here; Wine's cmd turns the exit code of a `call`ed batch file
    # (the python.bat stand-in) into 1. Both are a failure: assert that, not the number.
    assert result.code != 0, result
    assert cmd.runs() == [f"--verify {ENV_TEST}"]


def test_run_migrations_bat_without_python_says_so(cmd):
    result = cmd.run("run-migrations.bat", WINEPATH=cmd.without_fakes())

    assert result.code == 2, result
    assert "Python 3.11 or newer not found" in result.output
    assert cmd.runs() == []


def test_rebuild_docker_dbonly_bat_recreates_mongodb_then_migrates_on_yes(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="yes\r\n")

    assert result.code == 0, result
    assert cmd.calls("docker") == DOCKER_BAT_CALLS
    assert "Run migrations now? (yes/no)" in result.stdout
    assert cmd.runs() == [f"--all {ENV_TEST}"]


def test_rebuild_docker_dbonly_bat_leaves_the_migrations_on_no(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="no\r\n")

    assert result.code == 0, result
    assert "Run migrations now? (yes/no)" in result.stdout
    assert "run scripts\\run-migrations.bat when you are ready" in result.stdout
    assert cmd.runs() == []


def test_rebuild_docker_dbonly_bat_fails_when_the_migrations_fail(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="yes\r\n", FAKE_PYTHON_EXIT="1")

    assert result.code != 0, result  # the runner's code on Windows; Wine's cmd may give another non-zero one
    assert cmd.runs() == [f"--all {ENV_TEST}"]


def test_rebuild_docker_dbonly_bat_gives_up_when_mongodb_is_not_ready(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="yes\r\n", FAKE_DOCKER_MODE="starting", MONGO_READY_TIMEOUT="1")

    assert result.code == 5, result
    assert "MongoDB not ready after 1 s (mongodb-test: starting)" in result.output
    assert "docker logs mongodb-test" in result.output
    assert "Run migrations now?" not in result.stdout and cmd.runs() == []


def test_rebuild_docker_dbonly_bat_stops_when_compose_fails(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="yes\r\n", FAKE_DOCKER_FAIL="up")

    assert result.code != 0, result  # 17 on Windows; Wine's cmd may report another non-zero code
    assert cmd.calls("docker") == DOCKER_BAT_CALLS[:-1]
    assert cmd.runs() == []


def test_rebuild_docker_dbonly_bat_falls_back_to_docker_compose_v1(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="no\r\n", FAKE_DOCKER_COMPOSE="v1")

    assert result.code == 0, result
    assert cmd.calls("docker-compose") == [
        "docker-compose version",
        f'docker-compose -f "{windows_path(REPO)}\\docker-compose.test.yml" up -d --force-recreate mongodb-test']


def test_rebuild_docker_dbonly_bat_without_docker_says_so(cmd):
    result = cmd.run("rebuild-docker-dbonly.bat", input="yes\r\n", WINEPATH=cmd.without_fakes())

    assert result.code == 2, result
    assert "docker not found: install Docker Desktop" in result.output


# ----- scripts/run-local.sh: the local server, sample messages, the runner -----

@pytest.fixture
def run_local(tmp_path, db_name):
    """scripts/run-local.sh on a server of its own (a free port, data in tmp_path), stopped afterwards."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("LOCALDB_", "MONGODB_")) and k != "ENV_FILE"}
    env.update(LOCALDB_PORT=str(port), LOCALDB_DATA=str(tmp_path / "data"), MONGODB_DATABASE_NAME=db_name,
               SAMPLE_MESSAGES="30", PYTHONUNBUFFERED="1")

    def run(*args: str) -> Result:
        return Result(subprocess.run(["bash", str(SCRIPTS / "run-local.sh"), *args], env=env, cwd=tmp_path,
                                     capture_output=True, text=True, timeout=300))
    run.url = f"mongodb://127.0.0.1:{port}/"
    yield run
    subprocess.run(["bash", str(SCRIPTS / "local-db.sh"), "stop"], env=env, capture_output=True, timeout=60)
    (REPO / ".localdb" / f"localdb-{port}.log").unlink(missing_ok=True)


def runner_runs(result: Result, db_name: str) -> int:
    """How many times the runner ran: each run names its database once, first."""
    return sum(f"INFO    database {db_name} at " in line for line in result.stderr.splitlines())


def test_run_local_with_arguments_runs_only_those(run_local, db_name):
    result = run_local("--status")

    assert result.code == 0, result
    assert "loaded 30 sample chat messages" in result.stdout
    assert MIGRATION in result.stdout and "pending" in result.stdout
    assert runner_runs(result, db_name) == 1, result  # no --verify after it


def test_run_local_without_arguments_migrates_then_verifies(run_local, db_name):
    result = run_local()

    assert result.code == 0, result
    assert runner_runs(result, db_name) == 2, result  # --all, then --verify
    assert f"{MIGRATION}: ok (total=30, with_metadata=30, without_metadata=0)" in result.stderr
    with MongoClient(run_local.url) as client:
        assert migrated(client[db_name])
