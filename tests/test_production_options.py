"""The runner owns its client options whatever the app's URL says, and reads the URL without DNS."""

import time

import pytest

from conftest import SCRIPT, assert_nothing_lost, load, proxy_to, run_here, the_error
from wire_proxy import Fault

RUNNER = "run_migrations.py"


def with_options(url: str, options: str) -> str:
    return url + ("&" if "?" in url else ("?" if url.endswith("/") else "/?")) + options


@pytest.mark.slow
def test_app_sized_options_in_the_url_do_not_reach_the_runner(db, env):
    before = load(db, 5_000)
    app_url = with_options(env["MONGODB_URL"], "readPreference=secondaryPreferred&retryWrites=false"
                                               "&socketTimeoutMS=200&timeoutMS=300")
    result = run_here(SCRIPT, "--batch-size", "5000", "--progress-interval", "600", env={**env, "MONGODB_URL": app_url})

    assert result.code == 0, result
    [line] = [line for line in result.output.splitlines() if "its own client options" in line]
    for option in ("readPreference=secondaryPreferred", "retryWrites=false", "socketTimeoutMS=200", "timeoutMS=300"):
        assert option in line
    assert_nothing_lost(db, before)


def test_an_srv_name_that_does_not_resolve_is_exit_5_within_the_timeout_masked(cli, env):
    env["MONGODB_URL"] = "mongodb+srv://deploy:Srv-Secr3t@cluster0.nothing-here.invalid/?retryWrites=true"
    started = time.monotonic()
    result = cli(RUNNER, "--status", "--server-timeout", "3", env=env)
    assert result.code == 5, result
    assert time.monotonic() - started < 30
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    assert "cluster0.nothing-here.invalid" in line and "DNS" in line
    assert "Srv-Secr3t" not in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("path", ["/admin", "/local", "/config"])
def test_a_server_database_as_the_target_is_exit_2(cli, env, server_url, path):
    del env["MONGODB_DATABASE_NAME"]
    env["MONGODB_URL"] = server_url.rstrip("/") + path
    result = cli(RUNNER, "--status", env=env)
    assert result.code == 2, result
    [line] = [line for line in result.output.splitlines() if "ERROR" in line]
    assert f"'{path[1:]}'" in line and "authSource=admin" in line



@pytest.mark.parametrize("options, dropped", [
    ("readPreference=secondary&maxStalenessSeconds=120", ("readPreference=secondary", "maxStalenessSeconds=120")),
    ("readPreference=nearest&readPreferenceTags=dc:ny", ("readPreference=nearest", "readPreferenceTags=dc:ny")),
])
def test_options_of_another_read_preference_are_dropped_with_one_line(db, env, options, dropped):
    before = load(db, 300)
    result = run_here(SCRIPT, "--progress-interval", "600",
                      env={**env, "MONGODB_URL": with_options(env["MONGODB_URL"], options)})

    assert result.code == 0, result
    [line] = [line for line in result.output.splitlines() if "its own client options" in line]
    assert all(option in line for option in dropped), line
    assert_nothing_lost(db, before)


@pytest.mark.parametrize("asked, w", [((), "majority"), (("--write-concern", "majority"), "majority"),
                                      (("--write-concern", "1"), 1)])
def test_the_urls_journal_wtimeout_and_w_do_not_reach_the_batches(db, env, server_url, asked, w):
    before = load(db, 300)
    concerns = []  # the writeConcern of every batch write the server got
    with proxy_to(server_url) as proxy:
        proxy.add(Fault("update", "chat_messages", match=lambda body: bool(concerns.append(body))))
        url = with_options(proxy.url, "journal=false&wtimeoutMS=1&w=1")
        result = run_here(SCRIPT, "--batch-size", "100", "--progress-interval", "600", *asked,
                          env={**env, "MONGODB_URL": url})

    assert result.code == 0, result
    [line] = [line for line in result.output.splitlines() if "its own client options" in line]
    assert all(option in line for option in ("journal=false", "wtimeoutMS=1", "w=1")), line
    assert "WARNING" not in line  # w=1 is replaced, not refused: only w=0 is a warning
    # Bounded by the lease (migrator.fencing): PyMongo sends the time left as maxTimeMS and drops wtimeout.
    assert concerns and all(body["writeConcern"]["w"] == w and body["writeConcern"]["j"] is True
                            and body["writeConcern"].get("wtimeout", 10_000) > 1 and body["maxTimeMS"] > 1
                            for body in concerns), concerns
    assert_nothing_lost(db, before)


@pytest.mark.parametrize("options, said", [
    ("replicaSet=rs0", "none is a member of the replica set 'rs0'"),
    ("replicaSet=rs0&directConnection=false", "none is a member of the replica set 'rs0'"),
    ("tls=true", "TLS handshake did not complete"),
])
def test_a_replica_set_the_server_is_not_in_and_a_failed_tls_handshake_say_so(cli, env, server_url, options, said):
    url = with_options(server_url.replace("?directConnection=true", ""), options)
    result = cli(RUNNER, "--status", "--server-timeout", "2", env={**env, "MONGODB_URL": url})

    assert result.code == 5, result
    line = the_error(result)
    assert said in line and "is the server running" not in line, line
