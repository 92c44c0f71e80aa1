"""``xor-models`` / ``python -m modelrepo``: inspect a model repository and move its labels.

Exit codes: 0 done; 1 the operation failed (repository missing or unreadable, broken
labels.json, a version failing its manifest, a write that failed); 2 the request is wrong (bad
flags, label name, version or percentage; no such version; nothing to roll back to). Every
error is one line on stderr, and on any error nothing in the repository was changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from modelrepo.errors import ModelRepoError, UsageError
from modelrepo.format import (
    CANARY_LABEL,
    DEFAULT_LABEL,
    Labels,
    check_label_name,
    parse_percent_argument,
    parse_version_argument,
)
from modelrepo.operations import (
    LabelChange,
    collect_garbage,
    promote,
    rollback,
    set_canary_percent,
)
from modelrepo.repository import Repository, open_repository

PROG = "xor-models"
MAX_KEEP = 1_000_000


class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see {self.prog} --help)\n")


def _argument(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from exc

    return convert


def _keep(text: str) -> int:
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= MAX_KEEP:
        raise UsageError(f"--keep is an integer 1 to {MAX_KEEP:,}, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Inspect a model repository (a directory of version directories, or an S3 "
        "prefix) and "
        "point its labels (stable, canary, ...) at versions.",
        epilog="Exit codes: 0 done, 1 the operation failed, 2 a wrong request. On any error "
        "nothing in the repository is changed.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    repo_help = (
        "the repository: a directory such as models/xor, or s3://BUCKET/PREFIX (endpoint and "
        "credentials from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION)"
    )
    label_help = f"the label (default {DEFAULT_LABEL})"

    listing = commands.add_parser(
        "list", help="versions, sizes, accuracy, manifest status and labels (checks every file)"
    )
    listing.add_argument("repo", metavar="REPO", help=repo_help)
    listing.add_argument("--json", action="store_true", help="print JSON")

    promoting = commands.add_parser(
        "promote", help="point a label at a version (refused if it fails its manifest)"
    )
    promoting.add_argument("repo", metavar="REPO", help=repo_help)
    promoting.add_argument(
        "version",
        metavar="VERSION",
        type=_argument(parse_version_argument),
        help="a version of the repository (xor-models list shows them)",
    )
    promoting.add_argument(
        "--label", default=DEFAULT_LABEL, type=_argument(check_label_name), help=label_help
    )

    rolling = commands.add_parser("rollback", help="point a label back at its previous version")
    rolling.add_argument("repo", metavar="REPO", help=repo_help)
    rolling.add_argument(
        "--label", default=DEFAULT_LABEL, type=_argument(check_label_name), help=label_help
    )

    labels = commands.add_parser("labels", help="show labels.json")
    labels.add_argument("repo", metavar="REPO", help=repo_help)
    labels.add_argument("--json", action="store_true", help="print JSON")

    canary = commands.add_parser(
        "canary", help=f"send PERCENT of unpinned requests to the {CANARY_LABEL} label"
    )
    canary.add_argument("repo", metavar="REPO", help=repo_help)
    canary.add_argument(
        "percent",
        metavar="PERCENT",
        type=_argument(parse_percent_argument),
        help=f"0 to 100; above 0 needs a {CANARY_LABEL} label",
    )

    gc = commands.add_parser(
        "gc",
        help="delete the oldest versions beyond the newest N, except labelled ones and those "
        "in a label's history",
    )
    gc.add_argument("repo", metavar="REPO", help=repo_help)
    gc.add_argument(
        "--keep",
        metavar="N",
        required=True,
        type=_argument(_keep),
        help="keep the newest N versions (at least 1)",
    )
    gc.add_argument("--dry-run", action="store_true", help="say what would go, change nothing")
    return parser


# --- output --------------------------------------------------------------------------------------


def _size(size: int | None) -> str:
    if size is None:
        return "-"
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _list(repo: Repository, as_json: bool) -> int:
    labels = repo.read_labels()
    rows: list[dict[str, Any]] = []
    for info in repo.list_versions():
        check = repo.check_version(info)
        rows.append(
            {
                "version": info.version,
                "status": check.status,
                "size": check.size,
                "files": check.files,
                "accuracy": repo.evaluation_accuracy(info.version),
                "labels": labels.pointing_at(info.version),
                "problem": check.problem,
            }
        )
    if as_json:
        document = {"repository": repo.location, "versions": rows, **labels.to_document()}
        print(json.dumps(document, indent=2))
        return 0
    if not rows:
        print(f"{repo.location}: no versions")
        return 0
    table = [("VERSION", "STATUS", "SIZE", "ACCURACY", "LABELS")]
    for row in rows:
        accuracy = "-" if row["accuracy"] is None else f"{row['accuracy']:.4f}"
        table.append(
            (
                str(row["version"]),
                str(row["status"]),
                _size(row["size"]),
                accuracy,
                ", ".join(row["labels"]) or "-",
            )
        )
    widths = [max(len(line[column]) for line in table) for column in range(len(table[0]))]
    for line in table:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        )
    for row in rows:
        if row["problem"]:
            print(f"{row['version']}: {row['problem']}")
    return 0


def _print_labels(labels: Labels, location: str) -> None:
    if not labels.labels and not labels.history and not labels.canary_percent:
        print(f"{location}: no labels (the server serves the newest version)")
        return
    width = max((len(name) for name in (*labels.labels, *labels.history)), default=0)
    for name in sorted({*labels.labels, *labels.history}):
        current = labels.labels.get(name)
        line = f"{name.ljust(width)}  {current if current is not None else '-'}"
        if previous := labels.history.get(name):
            line += f"  (previous, newest last: {', '.join(map(str, previous))})"
        print(line)
    note = (
        "" if CANARY_LABEL in labels.labels or not labels.canary_percent else " (no canary label)"
    )
    print(f"canary_percent: {labels.canary_percent}{note}")


def _labels(repo: Repository, as_json: bool) -> int:
    labels = repo.read_labels()
    if as_json:
        print(json.dumps(labels.to_document(), indent=2))
    else:
        _print_labels(labels, repo.location)
    return 0


def _report_label(change: LabelChange, label: str, verb: str) -> int:
    for warning in change.warnings:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)
    before, after = change.before.labels.get(label), change.after.labels.get(label)
    if not change.changed:
        print(f"{label} already points at {after}: nothing changed")
    else:
        print(f"{label}: {before if before is not None else '(none)'} -> {after} ({verb})")
    return 0


def _canary(repo: Repository, percent: int) -> int:
    change = set_canary_percent(repo, percent)
    target = change.after.labels.get(CANARY_LABEL)
    sent = f" to {CANARY_LABEL} (version {target})" if target is not None else ""
    if change.changed:
        print(f"canary_percent: {change.before.canary_percent} -> {percent}{sent}")
    else:
        print(f"canary_percent is {percent} already: nothing changed")
    return 0


def _gc(repo: Repository, keep: int, dry_run: bool) -> int:
    plan = collect_garbage(repo, keep, dry_run=dry_run)
    would = "would delete" if dry_run else "deleted"
    for version in plan.delete:
        print(f"{would} version {version}")
    for version, reason in plan.protected:
        print(f"kept version {version} ({reason})")
    for name in plan.leftovers:
        print(f"{'would remove' if dry_run else 'removed'} {name} (left by an interrupted run)")
    if not plan.delete and not plan.leftovers:
        print(f"nothing to delete (keeping the newest {keep})")
    return 0


def _run(arguments: argparse.Namespace) -> int:
    repo = open_repository(arguments.repo)
    command = arguments.command
    if command == "list":
        return _list(repo, arguments.json)
    if command == "labels":
        return _labels(repo, arguments.json)
    if command == "promote":
        change = promote(repo, arguments.version, arguments.label)
        return _report_label(change, arguments.label, "promoted")
    if command == "rollback":
        return _report_label(rollback(repo, arguments.label), arguments.label, "rolled back")
    if command == "canary":
        return _canary(repo, arguments.percent)
    if command == "gc":
        return _gc(repo, arguments.keep, arguments.dry_run)
    raise AssertionError(f"unknown command {command!r}")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        arguments = _parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as exc:  # --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2
    logging.basicConfig(format=f"{PROG}: warning: %(message)s", level=logging.WARNING)
    try:
        return _run(arguments)
    except ModelRepoError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"{PROG}: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
