"""``xor-predict``: predict one pair (``xor-predict 0 1``) or a file of pairs
(``xor-predict --file pairs.csv``, ``-`` for stdin) with the XOR model server.

Exit codes: 0 answered; 1 the service refused (its message printed); 2 usage: a bad pair,
file or flag; 3 the service unreachable or timing out. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

from xor_client.client import DEFAULT_TIMEOUT, DEFAULT_URL, XorClient
from xor_client.errors import (
    InvalidPair,
    ServiceError,
    ServiceRefused,
    ServiceUnavailable,
    ServiceUnreachable,
)
from xor_client.models import DEFAULT_BATCH_SIZE, Pair, Prediction

PROG = "xor-predict"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
EXIT_INTERRUPTED, EXIT_BROKEN_PIPE = 130, 141  # as a shell reports SIGINT and SIGPIPE


class UsageError(Exception):
    """A bad pair, file or flag: exit 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, like every other error of the command (argparse prints the usage too).
        self.exit(EXIT_USAGE, f"{PROG}: error: {message} (see {PROG} --help)\n")


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        usage="%(prog)s [options] X1 X2\n       %(prog)s [options] --file FILE  (- for stdin)",
        description="Predict the XOR class of a pair of bits, or of a file of pairs, with the "
        "XOR model server.",
        epilog="Exit codes: 0 answered, 1 the service refused, 2 usage (bad pair, file or "
        "flag), 3 service unreachable or timing out. Examples: `xor-predict 0 1`; "
        "`xor-predict --file pairs.csv --json`; `printf '0,1\\n1,1\\n' | xor-predict --file -`.",
    )
    parser.add_argument("bits", nargs="*", metavar="X1 X2", help="one pair: two bits, 0 or 1")
    parser.add_argument(
        "-f",
        "--file",
        metavar="FILE",
        help="pairs to predict, one `x1,x2` a line (a header line, blank lines and # comments "
        "are skipped); `-` reads stdin. Prints one line per pair, in order",
    )
    parser.add_argument(
        "--url",
        default=os.environ.get("XOR_URL") or DEFAULT_URL,
        help=f"the server (default: $XOR_URL, else {DEFAULT_URL})",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per pair: inputs, class_id, probabilities, model_version",
    )
    pin = parser.add_mutually_exclusive_group()
    pin.add_argument("--label", metavar="NAME", help="predict with the version serving NAME")
    pin.add_argument(
        "--version", metavar="N", type=_positive(int), help="predict with the loaded version N"
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        type=_positive(int),
        default=DEFAULT_BATCH_SIZE,
        help="most pairs per request (default %(default)s, the service's default limit; "
        "lowered by itself if the service allows fewer)",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=_positive(float),
        default=DEFAULT_TIMEOUT,
        help="give up on a request after this long (default %(default)s); retried like a "
        "refused connection",
    )
    parser.add_argument(
        "-q", "--quiet", action="store_true", help="print no retry notices on stderr"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _show_retries(quiet=args.quiet)
    answered = 0
    total = 0
    try:
        pairs = _pairs(args)
        total = len(pairs)
        with XorClient(args.url, timeout=args.timeout, batch_size=args.batch_size) as client:
            for batch in client.predict_batches(pairs, version=args.version, label=args.label):
                _print(batch, as_json=args.json)
                answered += len(batch)
    except (UsageError, InvalidPair, ValueError) as exc:
        return _fail(EXIT_USAGE, str(exc))
    except ServiceUnreachable as exc:
        message = f"service unreachable at {exc.url} ({exc.reason}{_tries(exc.attempts)})"
        message += _progress(answered, total)
        if answered == 0 and exc.reason == "connection refused":
            message += "; is the server running?"
        return _fail(EXIT_UNREACHABLE, message)
    except ServiceUnavailable as exc:
        message = f"service unavailable ({exc.status} {exc.code}{_tries(exc.attempts)}): "
        return _fail(EXIT_REFUSED, message + exc.message + _progress(answered, total))
    except ServiceRefused as exc:
        message = f"the service refused the request ({exc.status} {exc.code}): {exc.message}"
        return _fail(EXIT_REFUSED, message + _progress(answered, total))
    except ServiceError as exc:
        message = f"the service failed ({exc.status} {exc.code}): {exc.message}"
        return _fail(EXIT_REFUSED, message + _progress(answered, total))
    except KeyboardInterrupt:
        return _fail(EXIT_INTERRUPTED, "interrupted" + _progress(answered, total))
    except BrokenPipeError:
        # The reader left (`| head`): nothing more to say, and nowhere to say it.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return EXIT_OK


def _pairs(args: argparse.Namespace) -> list[Pair]:
    if args.file is not None:
        if args.bits:
            raise UsageError("give a pair (X1 X2) or --file, not both")
        if args.file == "-":
            return read_pairs(sys.stdin, "<stdin>")
        try:
            with open(args.file, encoding="utf-8") as stream:
                return read_pairs(stream, args.file)
        except OSError as exc:
            raise UsageError(f"cannot read {args.file}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise UsageError(f"{args.file}: not UTF-8 text ({exc.reason})") from exc
    if len(args.bits) != 2:
        got = "nothing" if not args.bits else " ".join(args.bits)
        raise UsageError(f"give one pair as two bits (xor-predict 0 1) or --file; got {got}")
    return [(_bit(args.bits[0], "x1"), _bit(args.bits[1], "x2"))]


_PLAIN_LINES: dict[str, Pair] = {
    f"{a},{b}{end}": (a, b) for a in (0, 1) for b in (0, 1) for end in ("\n", "\r\n", "")
}


def read_pairs(lines: Iterable[str], name: str) -> list[Pair]:
    """The pairs of ``lines``: ``x1,x2`` (or ``x1 x2``) a line. Blank lines and ``#``
    comments are skipped, and a first line that is not numbers (a header like ``x1,x2``)."""
    pairs: list[Pair] = []
    seen_line = False
    for number, line in enumerate(lines, start=1):
        known = _PLAIN_LINES.get(line)
        if known is not None:  # the common case, quickly: a file of a million lines is fine
            pairs.append(known)
            seen_line = True
            continue
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        fields = text.replace(",", " ").split()
        first, seen_line = not seen_line, True
        if first and len(fields) == 2 and not any(_is_int(field) for field in fields):
            continue  # the header
        if len(fields) != 2 or text.count(",") > 1:
            raise UsageError(f"{name}:{number}: expected two bits like 0,1, got {_cut(text)!r}")
        try:
            pairs.append((_bit(fields[0], "x1"), _bit(fields[1], "x2")))
        except UsageError as exc:
            raise UsageError(f"{name}:{number}: {exc}") from None
    return pairs


def _bit(text: str, name: str) -> int:
    if text not in ("0", "1"):
        raise UsageError(f"{name} must be 0 or 1, got {_cut(text)!r}")
    return int(text)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _cut(text: str) -> str:
    return text if len(text) <= 40 else text[:37] + "..."


def _print(batch: Iterable[Prediction], *, as_json: bool) -> None:
    if as_json:
        lines = [
            json.dumps(
                {
                    "inputs": list(p.pair),
                    "class_id": p.class_id,
                    "probabilities": list(p.probabilities),
                    "model_version": p.model_version,
                },
                separators=(",", ":"),
            )
            for p in batch
        ]
    else:
        lines = [
            f"{p.pair[0]} {p.pair[1]} -> {p.class_id} (p={p.probability:.4f}, "
            f"model {p.model_version})"
            for p in batch
        ]
    sys.stdout.write("".join(line + "\n" for line in lines))
    # Each answered batch is out before the next request: a run that fails later keeps it.
    sys.stdout.flush()


def _tries(attempts: int) -> str:
    return f", {attempts} attempts" if attempts > 1 else ""


def _progress(answered: int, total: int) -> str:
    if total <= 1:
        return ""
    if answered == 0:
        return f"; none of the {total} pairs answered"
    return (
        f"; {answered} of {total} pairs answered (printed above), the other {total - answered} not"
    )


def _fail(code: int, message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return code


def _show_retries(*, quiet: bool) -> None:
    """The client's retry notices as ``xor-predict: ...`` lines on stderr: a wait on a
    service that is starting should not look like a hang."""
    logger = logging.getLogger("xor_client")
    if quiet or logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    # Waits of a second or more (a 503's Retry-After): the quick reconnects are not news.
    handler.addFilter(lambda record: getattr(record, "retry_delay", 1.0) >= 1.0)
    handler.setFormatter(logging.Formatter(f"{PROG}: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
