"""--selftest, --preview and the estimate of --dry-run: a migration proven on scratch copies, and what is said."""

import json
import sys

from rich.console import Console
from rich.text import Text

from migrator import docdiff
from migrator import selftest as prover
from migrator.commands.narration import Context
from migrator.durations import eta_text
from migrator.errors import ExitCode, MigrationError
from migrator.migration import Migration, in_parens
from migrator.output import log, say
from migrator.redact import redact


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


async def selftest(ctx: Context, migration: Migration, sample: int | None = None) -> int:
    """--selftest NAME: its checks on scratch copies of a sample, a line each; exit 4 naming the one that fails."""
    size = sample or prover.DEFAULT_SAMPLE
    await _warn_of_leftovers(ctx)
    log.info("%s: self-test on scratch copies of up to %s of the documents it changes", migration.name, f"{size:,}")
    proof = await ctx.engine.selftest(migration, size)
    _report_samples(migration, proof.samples)
    if not proof.samples:
        log.info("%s: %s: the checks run on empty scratch copies", migration.name, prover.why_none(proof.samples))
    for check in proof.checks:
        say(f"{_VERDICT[check.ok]}  {check.name}: {check.detail}")
        for line in check.example:
            say(f"      {line}")
    scratch = "its scratch copies are removed; the real collections were only read"
    if proof.failed:
        raise MigrationError(f"{migration.name}: self-test failed: {proof.failed.failure}: {proof.failed.detail}; "
                             f"{scratch}", ExitCode.VERIFY_FAILED)
    rate = f" ({proof.modified / proof.seconds:,.0f} documents/s)" if proof.modified and proof.seconds > 0 else ""
    log.info("%s: self-test passed: up modified %s documents in %.2f s%s; %s", migration.name, f"{proof.modified:,}",
             proof.seconds, rate, scratch)
    return ExitCode.OK


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
                        "documents": [{"collection": d.collection, "_id": docdiff.as_plain(d.id), "state": d.state,
                                       "changes": [change.as_json() for change in d.changes]}
                                      for d in found.documents]}, indent=2))
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
