"""Proving a migration before it runs (issue 16): --selftest, --preview, the estimate of --dry-run and the
test --new writes; against the real server. Every run must leave the database exactly as it was."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap

import pytest

from conftest import (
    MIGRATIONS,
    REPO,
    contents,
    finish,
    finish_draft,
    proving_folder,
    selftest,
    start,
    the_error,
    verdicts,
    wait_for,
)
from conftest import write_proving_migration as write
from migrator.checksum import code_checksum
from migrator.errors import MigrationError
from migrator.scratch import PREFIX, ScratchDatabase
from migrator.selftest import NOT_AVAILABLE, index_answer
from sample_messages import chat_messages

RUNNER = "run_migrations.py"
EXISTING = "add_metadata_to_chat_messages"
PASSED = "self-test passed"


@pytest.fixture
def folder(tmp_path, env):
    return proving_folder(tmp_path, env)


# ----- --selftest ------------------------------------------------------------------------------------

def test_selftest_of_the_project_migration_passes_and_leaves_the_database_byte_identical(mongo, db, cli):
    db.chat_messages.insert_many(chat_messages(60, with_metadata_every=5))  # 48 lack metadata, 12 hold the app's
    before = contents(mongo, db)

    result = cli(RUNNER, "--selftest", EXISTING)

    assert result.code == 0, result
    assert f"{EXISTING}: copied 48 documents of chat_messages it changes and 12 it must leave alone" in result.stderr
    assert verdicts(result) == [
        "PASS  up, then verify: 48 documents modified; verified (total=60, with_metadata=60, without_metadata=0)",
        "PASS  idempotent: up again modified nothing; all 60 documents byte-identical",
        'PASS  leaves other documents alone: the 12 documents outside touches("apply") unchanged',
        "PASS  reversible: rollback, then verify_rollback: all 60 documents byte-identical to the originals"]
    assert f"{PASSED}: up modified 48 documents" in result.stderr
    assert contents(mongo, db) == before  # documents, collections (no lock, changelog, checkpoint), databases


def test_sample_bounds_the_copy(db, cli):
    db.chat_messages.insert_many(chat_messages(60, with_metadata_every=5))
    result = cli(RUNNER, "--selftest", EXISTING, "--sample", "10")
    assert result.code == 0, result
    assert "copied 10 documents of chat_messages it changes and 2 it must leave alone" in result.stderr


def test_a_migration_that_incs_a_counter_is_not_idempotent(mongo, db, cli, folder):
    write(folder, "bump_counter", '''
        async def up(db):
            return await db.chat_messages.update_many({}, {"$inc": {"views": 1}})

        async def verify(db):
            return await db.chat_messages.count_documents({"views": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({}, {"$unset": {"views": ""}})
        ''')
    db.chat_messages.insert_many(chat_messages(10))
    before = contents(mongo, db)

    result = selftest(cli, folder, "bump_counter")

    assert result.code == 4, result
    assert verdicts(result)[:2] == ["PASS  up, then verify: 10 documents modified; verified",
                                    "FAIL  idempotent: up again modified 10 documents"]
    assert re.search(r"^      chat_messages _id=ObjectId\('[0-9a-f]{24}'\)\n      ~ views: 1 -> 2$", result.stdout,
                     re.MULTILINE), result.stdout
    assert "bump_counter: self-test failed: not idempotent: up again modified 10 documents" in the_error(result)
    assert contents(mongo, db) == before


def test_a_rollback_that_removes_an_unrelated_field_is_not_reversible(mongo, db, cli, folder):
    write(folder, "add_rating", '''
        async def up(db):
            return await db.chat_messages.update_many({"rating": {"$exists": False}}, {"$set": {"rating": 0}})

        async def verify(db):
            return await db.chat_messages.count_documents({"rating": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({}, {"$unset": {"rating": "", "role": ""}})
        ''', touches='{"chat_messages": {"rating": {"$exists": False}}}')
    db.chat_messages.insert_many(chat_messages(8))
    before = contents(mongo, db)

    result = selftest(cli, folder, "add_rating")

    assert result.code == 4, result
    assert verdicts(result)[-1] == "FAIL  reversible: after rollback, 8 of 8 documents differ from the originals"
    assert re.search(r"^      chat_messages _id=ObjectId\('[0-9a-f]{24}'\)\n      - role: \"user\"$", result.stdout,
                     re.MULTILINE), result.stdout
    assert "add_rating: self-test failed: not reversible" in the_error(result)
    assert contents(mongo, db) == before


def test_a_migration_that_changes_documents_outside_its_declaration_fails(mongo, db, cli, folder):
    write(folder, "flag_all", '''
        async def up(db):
            return await db.chat_messages.update_many({}, {"$set": {"flag": True}})

        async def verify(db):
            return await db.chat_messages.count_documents({"flag": {"$exists": False}}) == 0

        async def rollback(db):
            return await db.chat_messages.update_many({"flag": True}, {"$unset": {"flag": ""}})
        ''', touches='{"chat_messages": {"flag": {"$exists": False}}}')
    db.chat_messages.insert_many(chat_messages(10))
    db.chat_messages.update_many({"role": "assistant"}, {"$set": {"flag": False}})  # 5 it must leave alone
    before = contents(mongo, db)

    result = selftest(cli, folder, "flag_all")

    assert result.code == 4, result
    assert 'FAIL  leaves other documents alone: 5 of the 5 documents outside touches("apply") changed' \
        in verdicts(result), result
    assert "      ~ flag: false -> true" in result.stdout
    assert "flag_all: self-test failed: changes documents outside its touches() declaration" in the_error(result)
    assert contents(mongo, db) == before


def test_a_migration_without_rollback_is_reported_as_such_not_failed(db, cli, folder):
    write(folder, "no_undo", '''
        async def up(db):
            return await db.chat_messages.update_many({"x": {"$exists": False}}, {"$set": {"x": 1}})

        async def verify(db):
            return await db.chat_messages.count_documents({"x": {"$exists": False}}) == 0
        ''', touches='{"chat_messages": {"x": {"$exists": False}}}')
    db.chat_messages.insert_many(chat_messages(4))
    result = selftest(cli, folder, "no_undo")
    assert result.code == 0, result
    assert verdicts(result)[-1] == "SKIP  reversible: no rollback: not checked (undo it by hand or restore a backup)"
    assert PASSED in result.stderr


KEEPS_ITS_FIELD = '''
    async def up(db):
        return await db.chat_messages.update_many({"tag": {"$exists": False}}, {"$set": {"tag": "v2"}})

    async def verify(db):
        return await db.chat_messages.count_documents({"tag": {"$exists": False}}) == 0

    async def rollback(db):  # cannot tell its tags from the app's: keeps them all
        return None
    '''


def test_a_field_the_rollback_keeps_by_design_may_differ_only_when_declared(db, cli, folder):
    db.chat_messages.insert_many(chat_messages(6))
    write(folder, "tag_messages", KEEPS_ITS_FIELD, touches='{"chat_messages": {"tag": {"$exists": False}}}')
    undeclared = selftest(cli, folder, "tag_messages")
    assert undeclared.code == 4, undeclared
    assert "      + tag: \"v2\"" in undeclared.stdout
    assert "self-test failed: not reversible" in the_error(undeclared)

    write(folder, "tag_messages", 'keeps_on_rollback = {"chat_messages": ["tag"]}\n' + textwrap.dedent(KEEPS_ITS_FIELD),
          touches='{"chat_messages": {"tag": {"$exists": False}}}')
    declared = selftest(cli, folder, "tag_messages")
    assert declared.code == 0, declared
    assert verdicts(declared)[-1] == ("PASS  reversible: rollback: all 6 documents byte-identical to the originals, "
                                      "but for chat_messages.tag, which it keeps by design, on 6")


RENAMES_A_FIELD = '''
    async def up(db):
        return await db.chat_messages.update_many({"user_id": {"$exists": True}}, {"$rename": {"user_id": "owner"}})

    async def verify(db):
        return await db.chat_messages.count_documents({"user_id": {"$exists": True}}) == 0

    async def rollback(db):  # the field comes back last: the same document, its fields in another order
        return await db.chat_messages.update_many({"owner": {"$exists": True}}, {"$rename": {"owner": "user_id"}})
    '''


def test_a_rename_passes_reversible_once_it_declares_that_field_order_does_not_matter(db, cli, folder):
    db.chat_messages.insert_many(chat_messages(5))
    touches = '{"chat_messages": {"user_id": {"$exists": True}} if action == "apply" else {"owner": {"$exists": True}}}'
    write(folder, "rename_user_id", RENAMES_A_FIELD, touches=touches)
    ordered = selftest(cli, folder, "rename_user_id")
    assert ordered.code == 4, ordered
    assert "      ~ the same fields in another order" in ordered.stdout
    assert "self-test failed: not reversible" in the_error(ordered)

    write(folder, "rename_user_id", "field_order_matters = False\n" + textwrap.dedent(RENAMES_A_FIELD), touches=touches)
    unordered = selftest(cli, folder, "rename_user_id")
    assert unordered.code == 0, unordered
    assert verdicts(unordered)[-1] == ("PASS  reversible: rollback: all 5 documents byte-identical to the originals; "
                                       "5 with their fields in another order (field_order_matters = False)")


def test_field_order_matters_is_true_or_false_and_not_part_of_the_checksum(db, cli, folder):
    write(folder, "rename_user_id", "field_order_matters = 'no'\n" + textwrap.dedent(RENAMES_A_FIELD))
    result = selftest(cli, folder, "rename_user_id")
    assert result.code == 2, result
    assert "rename_user_id.py: field_order_matters must be True or False, not 'no'" in the_error(result)
    source = (folder / "rename_user_id.py").read_text()
    assert code_checksum(source) == code_checksum(source.replace("field_order_matters = 'no'\n", ""))


def test_keeps_on_rollback_of_the_wrong_shape_is_a_clear_usage_error(db, cli, folder):
    write(folder, "bad_keeps", 'keeps_on_rollback = ["metadata"]\n' + textwrap.dedent(KEEPS_ITS_FIELD))
    result = selftest(cli, folder, "bad_keeps")
    assert result.code == 2, result
    assert ("bad_keeps.py: keeps_on_rollback must map collections to the fields its rollback keeps, e.g. "
            "{\"chat_messages\": [\"metadata\"]}, not ['metadata']") in the_error(result)


def test_the_migration_sees_only_scratch_copies_whatever_way_it_names_a_collection(mongo, db, cli, folder, tmp_path):
    seen = tmp_path / "seen.json"
    write(folder, "looks_around", f'''
        async def up(db):
            await db.side.insert_one({{"made": "by up"}})
            await db.get_collection("side").rename("renamed")
            json.dump({{"attribute": db.chat_messages.name, "item": db["chat_messages"].name,
                        "get_collection": db.get_collection("chat_messages").name,
                        "database_of": db.chat_messages.database["x"].name,
                        "listed": sorted(await db.list_collection_names()),
                        "count": await db.chat_messages.count_documents({{}})}}, open({str(seen)!r}, "w"))
            await db.drop_collection("renamed")

        async def verify(db):
            return True
        ''')
    db.chat_messages.insert_many(chat_messages(5))
    before = contents(mongo, db)

    result = selftest(cli, folder, "looks_around")

    assert result.code == 0, result
    names = json.loads(seen.read_text())
    prefix = re.fullmatch(rf"({PREFIX}[0-9a-f]{{8}}_)chat_messages", names["attribute"]).group(1)
    assert names == {"attribute": f"{prefix}chat_messages", "item": f"{prefix}chat_messages",
                     "get_collection": f"{prefix}chat_messages", "database_of": f"{prefix}x",
                     "listed": ["chat_messages", "renamed"], "count": 5}
    assert contents(mongo, db) == before  # no "side", no "renamed": they were scratch collections too


def test_pipelines_and_commands_name_scratch_collections_and_no_other_database():
    scratch = ScratchDatabase(type("Db", (), {"name": "app"})(), "_selftest_ab_")
    assert scratch.pipeline([{"$match": {}}, {"$lookup": {"from": "users", "pipeline": [{"$unionWith": "b"}]}},
                             {"$facet": {"f": [{"$graphLookup": {"from": "c"}}]}}, {"$merge": {"into": "d"}}]) == [
        {"$match": {}}, {"$lookup": {"from": "_selftest_ab_users", "pipeline": [{"$unionWith": "_selftest_ab_b"}]}},
        {"$facet": {"f": [{"$graphLookup": {"from": "_selftest_ab_c"}}]}}, {"$merge": {"into": "_selftest_ab_d"}}]
    out = {"$out": {"db": "app", "coll": "e"}}
    assert scratch.pipeline([out]) == [{"$out": {"db": "app", "coll": "_selftest_ab_e"}}]
    assert scratch._command({"collMod": "m", "validator": {}}) == {"collMod": "_selftest_ab_m", "validator": {}}
    with pytest.raises(MigrationError, match="may not write to database other"):
        scratch.pipeline([{"$merge": {"into": {"db": "other", "coll": "x"}}}])


def test_an_empty_or_missing_collection_or_nothing_to_change_is_a_clear_message(mongo, db, cli):
    missing = cli(RUNNER, "--selftest", EXISTING)
    assert missing.code == 2, missing
    assert (f"{EXISTING}: nothing to prove it on: chat_messages: no such collection in database {db.name}; run it "
            "where the collections hold documents it changes (a copy of production data, or a fixture)"
            ) in the_error(missing)
    assert db.name not in mongo.list_database_names()  # not even created

    db.create_collection("chat_messages")
    empty = cli(RUNNER, "--selftest", EXISTING)
    assert empty.code == 2 and "nothing to prove it on: chat_messages is empty;" in the_error(empty), empty

    db.chat_messages.insert_many([{"metadata": None}, {"metadata": {"a": 1}}])
    applied = cli(RUNNER, "--selftest", EXISTING)
    assert applied.code == 2, applied
    assert ("none of the documents of chat_messages is one it changes (touches(\"apply\") matches none: applied "
            "already?)") in the_error(applied)

    preview = cli(RUNNER, "--preview", EXISTING)
    assert preview.code == 0, preview
    assert f"{EXISTING}: nothing to preview: none of the documents of chat_messages" in preview.stderr
    assert db.list_collection_names() == ["chat_messages"]


def test_a_draft_is_refused(db, cli, folder):
    assert cli(RUNNER, "--new", "add_language", "--migrations-dir", str(folder)).code == 0
    db.chat_messages.insert_many(chat_messages(3))
    result = selftest(cli, folder, "add_language")
    assert result.code == 2 and "add_language.py is a draft (template not edited)" in the_error(result), result


@pytest.mark.parametrize("stop, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_stopping_a_selftest_leaves_nothing_behind(mongo, db, env, folder, tmp_path, stop, code):
    marker = tmp_path / "in_up"
    write(folder, "slow_up", f'''
        async def up(db):
            await db.chat_messages.update_many({{}}, {{"$set": {{"seen": 1}}}})
            open({str(marker)!r}, "w").close()
            await asyncio.sleep(60)

        async def verify(db):
            return True
        ''')
    db.chat_messages.insert_many(chat_messages(20))
    before = contents(mongo, db)
    process = start(env, "--selftest", "slow_up", "--migrations-dir", str(folder), script=RUNNER)
    try:
        wait_for(marker.exists, "up on the copies", process, timeout=60)
        assert any(name.startswith(PREFIX) for name in db.list_collection_names())  # the copy was there
        process.send_signal(stop)
        result = finish(process, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert result.code == code, result
    assert "Traceback" not in result.output
    assert contents(mongo, db) == before


def test_scratch_collections_of_another_run_are_named_and_left_alone(db, cli):
    db.chat_messages.insert_many(chat_messages(5))
    db[f"{PREFIX}dead0000_chat_messages"].insert_one({"left": "by a killed run"})
    result = cli(RUNNER, "--selftest", EXISTING)
    assert result.code == 0, result
    assert (f"scratch collections of another self-test, running now or killed: {PREFIX}dead0000_chat_messages: once "
            "none runs, drop them (they are copies)") in result.stderr
    assert sorted(db.list_collection_names()) == sorted(["chat_messages", f"{PREFIX}dead0000_chat_messages"])


# ----- --preview ------------------------------------------------------------------------------------

def test_preview_shows_the_added_field_of_each_sampled_document_and_writes_nothing(mongo, db, cli):
    db.chat_messages.insert_many(chat_messages(20, with_metadata_every=4))
    before = contents(mongo, db)

    result = cli(RUNNER, "--preview", EXISTING)

    assert result.code == 0, result
    lines = result.stdout.splitlines()
    assert len(lines) == 6, result
    for head, change in zip(lines[::2], lines[1::2], strict=True):
        assert re.fullmatch(r"chat_messages _id=ObjectId\('[0-9a-f]{24}'\): changed", head), head
        assert change == "  + metadata: null"
    assert f"{EXISTING}: would change 15 documents; the preview wrote only scratch copies, now removed" in result.stderr
    assert contents(mongo, db) == before


def test_preview_json_for_machines(mongo, db, cli):
    db.chat_messages.insert_many(chat_messages(20, with_metadata_every=4))
    before = contents(mongo, db)
    result = cli(RUNNER, "--preview", EXISTING, "--json", "--sample", "2")
    assert result.code == 0, result
    shown = json.loads(result.stdout)
    assert shown["would_change"] == 15 and shown["verified"] is True and len(shown["documents"]) == 2
    for document in shown["documents"]:
        assert document["state"] == "changed" and set(document["_id"]) == {"$oid"}
        assert document["changes"] == [{"field": "metadata", "change": "added", "after": None}]
    assert contents(mongo, db) == before


# ----- the estimate of --dry-run -----------------------------------------------------------------------

def test_dry_run_estimates_the_time_from_a_scratch_sample_and_says_whether_an_index_serves(mongo, db, cli,
                                                                                             is_ferretdb):
    db.chat_messages.insert_many(chat_messages(30, with_metadata_every=3))
    before = contents(mongo, db)

    result = cli(RUNNER, "--all", "--dry-run")

    assert result.code == 0, result
    assert "would change 20 documents; nothing written" in result.stderr
    index = NOT_AVAILABLE if is_ferretdb else "no: a full collection scan"
    assert f"{EXISTING}: index use of its filter on chat_messages: {index}" in result.stderr
    assert re.search(rf"{EXISTING}: estimate: (under a second|about \d+ s) for 20 documents, at [\d,]+ documents/s "
                     r"\(timed on a scratch copy of 20 of them, now removed\)", result.stderr), result
    assert contents(mongo, db) == before

    capped = cli(RUNNER, "--all", "--dry-run", "--max-rate", "2")
    assert "estimate: about 10 s for 20 documents, at 2 documents/s (--max-rate)" in capped.stderr, capped


def test_without_count_pending_the_estimate_counts_what_touches_declares(db, cli, folder):
    write(folder, "add_x", '''
        async def up(db):
            return await db.chat_messages.update_many({"x": {"$exists": False}}, {"$set": {"x": 1}})

        async def verify(db):
            return await db.chat_messages.count_documents({"x": {"$exists": False}}) == 0
        ''', touches='{"chat_messages": {"x": {"$exists": False}}}')
    db.chat_messages.insert_many(chat_messages(7))
    db.chat_messages.update_one({}, {"$set": {"x": 0}})
    result = cli(RUNNER, "--migration", "add_x", "--dry-run", "--allow-out-of-order", "--migrations-dir", str(folder))
    assert result.code == 0, result
    assert "add_x: dry run: would change 6 documents; nothing written" in result.stderr  # touches("apply")
    assert re.search(r"add_x: estimate: .* for 6 documents, at [\d,]+ documents/s \(timed on a scratch copy of 6 ",
                     result.stderr), result
    assert db.chat_messages.count_documents({"x": {"$exists": False}}) == 6


def test_the_index_answer_reads_mongodb_query_plans():
    ixscan = {"queryPlanner": {"winningPlan": {"stage": "FETCH", "inputStage": {"stage": "IXSCAN",
                                                                                "indexName": "metadata_1"}}}}
    sbe = {"queryPlanner": {"winningPlan": {"queryPlan": {"stage": "COLLSCAN"}, "slotBasedPlan": {}}}}
    assert index_answer(ixscan) == "yes: index metadata_1"
    assert index_answer(sbe) == "no: a full collection scan"
    assert index_answer({"queryPlanner": {"Plan": ["SCAN chat"]}}) == NOT_AVAILABLE  # FerretDB's


# ----- --new writes the migration's own test ---------------------------------------------------------

def nested_pytest(test_file, server_url: str):
    """Run a generated test as the project's suite would, with the project's fixtures, on this server."""
    environment = {**os.environ, "MONGODB_URL": server_url,
                   "PYTHONPATH": os.pathsep.join(str(REPO / part) for part in ("", "tests", "scripts"))}
    return subprocess.run([sys.executable, "-m", "pytest", "-c", str(REPO / "pytest.ini"), "--rootdir", str(REPO),
                           "-p", "conftest", "-q", "-rs", "-p", "no:cacheprovider", str(test_file)],
                          env=environment, cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_new_writes_a_test_that_is_skipped_while_a_draft_and_passes_once_written(cli, folder, server_url):
    result = cli(RUNNER, "--new", "add_language", "--migrations-dir", str(folder))
    assert result.code == 0, result
    test_file = folder.parent / "tests" / "migrations" / "test_add_language.py"
    assert f"wrote {test_file}: its test, which runs --selftest --chaos on a small fixture" in result.stderr
    assert (test_file.parent / "__init__.py").exists()

    draft = nested_pytest(test_file, server_url)
    assert draft.returncode == 0 and "1 skipped" in draft.stdout, draft.stdout + draft.stderr
    assert "add_language.py is a draft: delete the `DRAFT:` line of its docstring" in draft.stdout

    finish_draft(folder / "add_language.py")
    written = nested_pytest(test_file, server_url)
    assert written.returncode == 0 and "1 passed" in written.stdout, written.stdout + written.stderr

    again = cli(RUNNER, "--new", "add_language", "--migrations-dir", str(folder))
    assert again.code == 2 and "already exists" in the_error(again)


INDEX_MIGRATION = '''"""{name}

Date: 2026-12-05 04:00:00
Description: an index on session_id: it changes no document
"""


def touches(action, purge=False):
    return {}


async def up(db):
    return await db.chat_messages.create_index("session_id", name="session_id_1")


async def verify(db):
    return "session_id_1" in await db.chat_messages.index_information()


async def rollback(db):  # a rollback sent again (a reply lost) finds the index gone: not an error
    if "session_id_1" in await db.chat_messages.index_information():
        await db.chat_messages.drop_index("session_id_1")


async def verify_rollback(db):
    return "session_id_1" not in await db.chat_messages.index_information()
'''


@pytest.mark.slow
def test_the_test_new_writes_passes_for_an_index_migration_and_shows_a_failure_whole(cli, folder, server_url):
    name = "add_session_id_index_to_chat_messages_" + "x" * 50  # long: its test still fits 120 columns
    assert cli(RUNNER, "--new", name, "--migrations-dir", str(folder)).code == 0
    test_file = folder.parent / "tests" / "migrations" / f"test_{name}.py"
    (folder / f"{name}.py").write_text(INDEX_MIGRATION.replace("{name}", name))
    index = nested_pytest(test_file, server_url)
    assert index.returncode == 0 and "1 passed" in index.stdout, index.stdout + index.stderr

    creates = "    return await db.chat_messages.create_index("
    not_idempotent = INDEX_MIGRATION.replace("return {}", 'return {"chat_messages": {}}').replace(
        creates, '    await db.chat_messages.update_many({}, {"$inc": {"views": 1}})\n' + creates)
    (folder / f"{name}.py").write_text(not_idempotent.replace("{name}", name))
    failing = nested_pytest(test_file, server_url)
    assert failing.returncode == 1 and "1 failed" in failing.stdout, failing.stdout + failing.stderr
    assert re.search(r"FAIL  idempotent: 40 of 40 documents differ after up again\n +chat_messages _id=ObjectId\(.*\n"
                     r" +~ views: 1 -> 2\n", failing.stdout), failing.stdout
    assert "self-test failed: not idempotent" in failing.stdout and "truncated" not in failing.stdout


def test_an_index_migration_is_proven_on_empty_copies_and_its_preview_says_why_none_is_shown(db, cli, folder):
    (folder / "add_index.py").write_text(INDEX_MIGRATION.replace("{name}", "add_index"))
    db.chat_messages.insert_many(chat_messages(3))
    proof = selftest(cli, folder, "add_index")
    assert proof.code == 0, proof
    assert ('add_index: touches("apply") names no collection: it changes no document (an index, say): the checks run '
            "on empty scratch copies") in proof.stderr
    preview = cli(RUNNER, "--preview", "add_index", "--migrations-dir", str(folder))
    assert preview.code == 0, preview
    assert ('add_index: nothing to preview: touches("apply") names no collection: it changes no document (an index, '
            "say)\n") in preview.stderr
    assert "add_index: would change 0 documents" in preview.stderr
    assert "session_id_1" not in db.chat_messages.index_information()


def test_new_refuses_when_only_the_test_exists_and_writes_nothing(cli, folder):
    test_file = folder.parent / "tests" / "migrations" / "test_add_language.py"
    test_file.parent.mkdir(parents=True)
    test_file.write_text("# mine\n")
    result = cli(RUNNER, "--new", "add_language", "--migrations-dir", str(folder))
    assert result.code == 2, result
    assert f"{test_file} already exists: remove it, or choose another name; nothing was written" in the_error(result)
    assert not (folder / "add_language.py").exists() and test_file.read_text() == "# mine\n"


def test_the_project_migration_has_its_own_test():
    test_file = REPO / "tests" / "migrations" / f"test_{EXISTING}.py"
    assert f'"--selftest", "{EXISTING}"' in test_file.read_text()


def test_declaring_keeps_on_rollback_does_not_change_an_applied_migration_s_checksum():
    source = (MIGRATIONS / f"{EXISTING}.py").read_text()
    declaration = 'keeps_on_rollback = {COLLECTION: ["metadata"]}\n'
    assert declaration in source
    assert code_checksum(source) == code_checksum(source.replace(declaration, ""))  # --check stays at "up to date"
    assert code_checksum(source) != code_checksum(source.replace(declaration, "other = 1\n"))
