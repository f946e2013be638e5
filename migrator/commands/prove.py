"""--selftest, --preview and the estimate of --dry-run: a migration proven on scratch copies, and what is said."""

import json
import sys

from rich.console import Console
from rich.text import Text

from migrator import chaos, docdiff
from migrator import selftest as prover
from migrator.commands.narration import Context
from migrator.durations import eta_text
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, in_parens
from migrator.output import log, plural, say
from migrator.redact import redact
from migrator.selftest_checks import DocumentPreview


async def _warn_of_leftovers(ctx: Context) -> None:
    found = await ctx.engine.scratch_leftovers()
    if found:
        log.warning("scratch collections of another self-test, running now or killed: %s: once none runs, drop "
                    "them (they are copies)", ", ".join(found))


def _report_samples(migration: Migration, samples: list[prover.Sample]) -> None:
    for sample in samples:
        if sample.note:
            log.info("%s: %s", migration.name, sample.note)
        else:
            log.info("%s: copied %s documents of %s it changes and %s it must leave alone", migration.name,
                     f"{sample.changes:,}", sample.collection, f"{sample.untouched:,}")


async def selftest(ctx: Context, migration: Migration, sample: int | None = None, with_chaos: bool = False,
                   faults: int | None = None, as_json: bool = False) -> int:
    """--selftest NAME: its checks on scratch copies of a sample, a line each; with --chaos, then a line per fault
    point; exit 4 naming the first that fails."""
    size = sample or prover.DEFAULT_SAMPLE
    await _warn_of_leftovers(ctx)
    log.info("%s: self-test on scratch copies of up to %s of the documents it changes%s", migration.name, f"{size:,}",
             ", then faults on the wire (--chaos)" if with_chaos else "")
    proof = await ctx.engine.selftest(migration, size, (faults or chaos.DEFAULT_FAULTS) if with_chaos else None)
    _report_samples(migration, proof.samples)
    if not proof.samples:
        log.info("%s: %s: the checks run on empty scratch copies", migration.name, prover.why_none(proof.samples))
    if as_json:
        say(json.dumps({**_proof_json(proof), **({"chaos": _chaos_json(proof.chaos)} if proof.chaos else {})},
                       indent=2))
    else:
        for check in proof.checks:
            say(f"{_VERDICT[check.ok]}  {check.name}: {check.detail}")
            for line in check.example:
                say(f"      {line}")
        if proof.chaos:
            _say_chaos(proof.chaos)
    if proof.failed or not proof.chaos:
        return _verdict(migration, proof)
    found = proof.chaos
    if found.failed:
        first = found.failed[0]
        raise MigrationError(f"{migration.name}: chaos check failed: {len(found.failed)} of {len(found.points)} fault "
                             f"points leave documents unlike a run without faults; first: {first.action}, "
                             f"{chaos.KIND_SAID[first.point.kind]} ({first.where}): {first.advice}; {_SCRATCH}",
                             ExitCode.VERIFY_FAILED)
    if not found.points:
        log.info("%s: its runs sent no write command: no fault point to try", migration.name)
    log.info("%s: self-test and chaos check passed: %s (%s) in %.1f s; %s", migration.name,
             plural(len(found.points), "fault point"),
             ", ".join(f"{action}: {plural(count, 'write')}" for action, count in found.writes.items()),
             found.seconds, _SCRATCH)
    return ExitCode.OK


_SCRATCH = "its scratch copies are removed; the real collections were only read"


def _verdict(migration: Migration, proof: prover.Proof) -> int:
    if proof.failed:
        raise MigrationError(f"{migration.name}: self-test failed: {proof.failed.failure}: {proof.failed.detail}; "
                             f"{_SCRATCH}", ExitCode.VERIFY_FAILED)
    rate = f" ({proof.modified / proof.seconds:,.0f} documents/s)" if proof.modified and proof.seconds > 0 else ""
    log.info("%s: self-test passed: up modified %s documents in %.2f s%s; %s", migration.name, f"{proof.modified:,}",
             proof.seconds, rate, _SCRATCH)
    return ExitCode.OK


def _say_chaos(found: chaos.ChaosReport) -> None:
    for point in found.points:
        say(f"{_VERDICT[point.ok]}  {point.action}, {chaos.KIND_SAID[point.point.kind]} ({point.where}): "
            f"{point.detail}")
        for document in point.documents:
            say(f"      {document.collection} _id={docdiff.shown(document.id)}: "
                + ("without faults -> with this fault" if document.changes else f"{document.state} with this fault"))
            for change in document.changes:
                say(f"        {change.line()}")
        if point.advice:
            say(f"      {point.advice}")
    if found.volatile:
        log.info("%s: not compared, as they differ from one run without faults to the next: %s",
                 found.migration.name, ", ".join(found.volatile))


def _proof_json(proof: prover.Proof) -> dict:
    passed = proof.failed is None and not (proof.chaos and proof.chaos.failed)  # what the exit code says
    return {"migration": proof.migration.name, "passed": passed,
            "checks": [{"name": check.name, "ok": check.ok, "detail": check.detail} for check in proof.checks]}


def _chaos_json(found: chaos.ChaosReport) -> dict:
    return {"passed": not found.failed, "seconds": round(found.seconds, 2), "batch_size": found.batch_size,
            "writes": found.writes, "not_compared": found.volatile,
            "points": [{"action": point.action, "fault": point.point.kind, "command": point.point.write.command,
                        "collection": point.point.write.collection, "nth": point.point.write.nth, "of": point.of,
                        "ok": point.ok, "detail": point.detail, "differing": point.differing,
                        "advice": point.advice or None,
                        "documents": [_document_json(d) for d in point.documents]}
                       for point in found.points]}


def _document_json(document: DocumentPreview) -> dict:
    """A document before and after, as --preview and --chaos print it in JSON."""
    return {"collection": document.collection, "_id": docdiff.as_plain(document.id), "state": document.state,
            "changes": [change.as_json() for change in document.changes]}


_VERDICT = {True: "PASS", False: "FAIL", None: "SKIP"}


async def preview(ctx: Context, migration: Migration, sample: int | None = None, as_json: bool = False) -> int:
    """--preview NAME: a few documents before and after `up`, run on scratch copies; and the --dry-run count."""
    await _warn_of_leftovers(ctx)
    count = await ctx.engine.count_pending(migration)  # of the real collections: a read
    found = await ctx.engine.preview(migration, sample or prover.PREVIEW_SAMPLE)
    if as_json:
        say(json.dumps({"migration": migration.name, "would_change": count,
                        "verified": found.verification.ok if found.verification else None,
                        "notes": [sample.note for sample in found.samples if sample.note],
                        "documents": [_document_json(d) for d in found.documents]}, indent=2))
        return ExitCode.OK
    for document in found.documents:
        _say_styled([(f"{document.collection} _id={docdiff.shown(document.id)}: {document.state}", "bold")]
                    + [(f"  {change.line()}", _STYLES[change.line()[0]]) for change in document.changes])
    if not found.documents:
        log.info("%s: nothing to preview: %s", migration.name, prover.why_none(found.samples))
    elif found.verification is not None:
        log.info("%s: on the copies: up modified %s of %s documents; verify %s%s", migration.name,
                 f"{found.modified:,}", f"{len(found.documents):,}", "passes" if found.verification.ok else "FAILS",
                 in_parens(found.verification.counts))
    would = "an unknown number of" if count is None else f"{count:,}"
    log.info("%s: would change %s documents; the preview wrote only scratch copies, now removed", migration.name,
             would)
    return ExitCode.OK


_STYLES = {"+": "green", "-": "red", "~": "yellow"}


def _say_styled(lines: list[tuple[str, str]]) -> None:
    """Lines on stdout: coloured in a terminal, plain otherwise. Already masked (docdiff.shown)."""
    if not sys.stdout.isatty():
        for text, _ in lines:
            say(text)
        return
    console = Console(highlight=False)
    for text, style in lines:
        console.print(Text(redact(text), style=style))


async def report_estimate(ctx: Context, migration: Migration, count: int | None) -> None:
    """--dry-run: how long `up` would take, timed on a scratch copy of a sample (at most at --max-rate); can its
    filter use an index."""
    found = await ctx.engine.estimate(migration, count)
    for collection, answer in found.indexes.items():
        log.info("%s: index use of its filter on %s: %s", migration.name, collection, answer)
    if found.note:
        log.info("%s: estimate: none: %s", migration.name, found.note)
        return
    rate = found.expected_rate
    if not found.documents or rate is None:
        return
    log.info("%s: estimate: %s for %s documents, at %s documents/s%s (timed on a scratch copy of %s of them, "
             "now removed)", migration.name, eta_text(found.documents / rate), f"{found.documents:,}",
             f"{rate:,.0f}", " (--max-rate)" if rate != found.rate else "", f"{found.sampled:,}")
