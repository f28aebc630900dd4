"""`payments bank import FILE…` and `payments bank reconcile --date D`: finance's commands.

Why they talk to PostgreSQL directly (like `payments migrate`) rather than to the service: statements a
bank delivers by EBICS or SFTP land as files on an operator's machine or a batch job, and the report is
read from the same tables the worker fills; neither needs a running server, and neither changes the
payments API. Each file is imported in its own transaction, all or nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import asdict
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from server.config import ConfigError, Settings


def _jsonable(value: Any) -> Any:
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict):
        return {key: _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return value


async def _with_statements(settings: Settings, work: Any) -> int:
    from server.bootstrap import bank_statements, open_database_url
    from storage.database import Database, create_pool
    from storage.migrator import migrate_dsn

    dsn, embedded = await asyncio.to_thread(open_database_url, settings)
    try:
        await migrate_dsn(dsn)
        db = Database(await create_pool(dsn, min_size=1, max_size=2))
        try:
            result: int = await work(bank_statements(settings, db, []))
            return result
        finally:
            await db.close()
    finally:
        if embedded is not None:
            embedded.close()


def cmd_import(args: argparse.Namespace) -> int:
    from adapters.bank.camt import parse_camt
    from server.app.bank_statements import BankStatements, StatementConflict
    from server.bootstrap import bank_message_versions

    settings = Settings.from_env()
    _, accepted = bank_message_versions(settings)

    async def work(statements: BankStatements) -> int:
        failed = 0
        for name in args.files:
            path = Path(name)
            try:
                document = parse_camt(await asyncio.to_thread(path.read_bytes), accepted)
                result = await statements.import_document(document, f"file:{path.name}")
            except (OSError, ValueError, StatementConflict) as exc:
                failed += 1
                print(f"error: {path}: refused, nothing of it applied: {exc}", file=sys.stderr)
                continue
            summary = {
                "file": str(path), "message": document.message, "reports_imported": result.reports_imported,
                "reports_already_imported": result.reports_already_imported, "entries": result.outcomes,
                "new_discrepancies": [asdict(item) for item in result.discrepancies],
            }  # fmt: skip
            print(json.dumps(summary, sort_keys=True))
        return 1 if failed else 0

    return asyncio.run(_with_statements(settings, work))


def cmd_reconcile(args: argparse.Namespace) -> int:
    from server.app.bank_statements import BankStatements

    settings = Settings.from_env()
    try:
        day = date.fromisoformat(args.date) if args.date else datetime.now(UTC).date()
    except ValueError:
        print("error: --date must be YYYY-MM-DD", file=sys.stderr)
        return 2

    async def work(statements: BankStatements) -> int:
        report = await statements.reconcile(day)
        if args.json:
            print(json.dumps(_jsonable(asdict(report)), indent=2, sort_keys=True))
        else:
            _table(report)
        return 0

    return asyncio.run(_with_statements(settings, work))


def _table(report: Any) -> None:
    """What finance scans: the day's counts, then one line per open discrepancy (--json has every field)."""
    print(f"bank reconciliation for {report.day.isoformat()}")
    print(f"  booked payouts: {report.bookings}   returns: {report.returns}   other entries: {report.other_entries}")
    print(f"  PAID payouts awaiting a booking: {report.unbooked_checked}")
    print(f"  open discrepancies: {len(report.discrepancies)}")
    if not report.discrepancies:
        return
    print(f"{'detected':<10}  {'kind':<17}  {'payout':<35}  {'end-to-end id':<35}  {'amount':>12}  detail")
    for item in report.discrepancies:
        amount = f"{item.amount_minor} {item.currency}" if item.amount_minor is not None else ""
        print(f"{item.detected_on.isoformat():<10}  {item.kind:<17}  {item.payout_id or '':<35}  "
              f"{item.end_to_end_id or '':<35}  {amount:>12}  {item.detail}")  # fmt: skip


def add_bank_commands(sub: Any) -> None:
    bank = sub.add_parser("bank", help="bank statements (camt.053/camt.054) and reconciliation, for finance")
    commands = bank.add_subparsers(dest="bank_command", required=True)
    importing = commands.add_parser("import", help="import camt.053/camt.054 files a bank delivered (EBICS, SFTP)")
    importing.add_argument("files", nargs="+", metavar="FILE")
    importing.set_defaults(func=_guarded(cmd_import))
    reconcile = commands.add_parser("reconcile", help="the day's bookings, returns and open discrepancies")
    reconcile.add_argument("--date", default="", help="YYYY-MM-DD (default: today, UTC)")
    reconcile.add_argument("--json", action="store_true", help="print the report as JSON instead of a table")
    reconcile.set_defaults(func=_guarded(cmd_reconcile))


def _guarded(command: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = command(args)
        except ConfigError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return result

    return run
