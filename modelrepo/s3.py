"""A repository under an S3 prefix (``s3://BUCKET/PREFIX``), on obstore.

Layout as a local repository's, as keys under the prefix: ``<version>/<file>`` (the version in
canonical decimal, as publishing writes it), ``<version>/MANIFEST.json``, ``labels.json`` and
``index.json``. A version without its manifest does not exist (``require_manifest`` is always
true here), so:

- publishing uploads every file, the manifest last, then rewrites index.json from a listing;
  an interrupted upload leaves a prefix without a manifest, which no reader takes for a version
  (``xor-models gc`` removes it once it is an hour old);
- deleting a version deletes its manifest first, then the rest.

Each object is written with one PUT, so a reader sees an old or a new labels.json, whole.
S3 has no lock: instead every write is conditional. A version's objects are created with
``If-None-Match: *`` (two publishers of one number: the first object decides, the other stops
before it wrote anything), and labels.json and index.json are replaced with ``If-Match`` on the
ETag read before (``If-None-Match: *`` when there was none): a writer that lost the race gets
``WriteConflict`` instead of silently undoing the other's change, and callers read again and
retry. ``locked()`` therefore only marks a read-modify-write; it excludes nobody.

Endpoint and credentials come from the standard AWS variables (``AWS_ENDPOINT_URL``,
``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION`` or
``AWS_DEFAULT_REGION``). Keys not in the environment are read from the file
``AWS_SHARED_CREDENTIALS_FILE`` names, when set (the AWS CLI's INI format, profile
``AWS_PROFILE`` or ``default``): compose mounts one there, generated at the first start, so no
key is ever written into the compose file. Without keys, obstore's default chain (instance or
container roles, web identity) applies. No message this module makes quotes a credential:
errors name the repository, the key and the server's error code only.

For a server that keeps a local cache of the repository: ``fetch_labels`` and ``fetch_index``
are conditional GETs (``If-None-Match``) that return ``NOT_MODIFIED`` for one cheap request,
and ``download_version`` copies a version into a local directory, every file's size and sha256
checked as it is written.
"""

from __future__ import annotations

import configparser
import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Final, Literal, NoReturn

import obstore
from obstore.exceptions import (
    AlreadyExistsError,
    NotModifiedError,
    PermissionDeniedError,
    PreconditionError,
    UnauthenticatedError,
)
from obstore.store import S3Store

from modelrepo.errors import (
    FormatError,
    RepositoryError,
    RepositoryNotFound,
    UnknownVersion,
    UsageError,
    VerificationError,
    VersionExists,
    excerpt,
)
from modelrepo.files import dump_json, parse_json
from modelrepo.format import (
    INDEX_FILE,
    LABELS_FILE,
    MANIFEST_FILE,
    MAX_INDEX_BYTES,
    MAX_LABELS_BYTES,
    MAX_MANIFEST_BYTES,
    Index,
    Labels,
    Manifest,
    check_version,
    path_problem,
    version_from_name,
)
from modelrepo.manifest import build_manifest, read_manifest_file, verify_files
from modelrepo.repository import STALE_SECONDS, ManifestRecord, Repository, VersionInfo

if TYPE_CHECKING:
    from obstore import GetOptions, ObjectMeta, PutMode
    from obstore.store import ClientConfig, RetryConfig, S3Config

log = logging.getLogger(__name__)

SCHEME = "s3://"
# Bucket names as S3 allows them (3-63 characters: lowercase letters, digits, '.', '-').
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_ERROR_CODE = re.compile(r"<Code>([A-Za-z0-9.]{1,64})</Code>")
DEFAULT_REGION = "us-east-1"
# A CLI run must fail fast on an unreachable endpoint; a syncer retries on its own schedule.
DEFAULT_CONNECT_TIMEOUT = timedelta(seconds=5)
DEFAULT_TIMEOUT = timedelta(seconds=120)
DEFAULT_MAX_RETRIES = 2
DEFAULT_RETRY_TIMEOUT = timedelta(seconds=10)
# Conditional writes of labels.json/index.json lost to another writer are retried this often.
CONFLICT_ATTEMPTS = 5
_LIST_CHUNK = 1000
_DOWNLOAD_CHUNK = 1 << 20
# A version file goes up in one PUT (If-None-Match needs it): S3's limit for one.
MAX_SINGLE_PUT = 5 * 2**30
_CREDENTIAL_CODES: Final = frozenset(
    {
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "AuthorizationHeaderMalformed",
    }
)


class WriteConflict(RepositoryError):
    """Another writer replaced the file between our read and our conditional write."""


class _NotModified(Enum):
    NOT_MODIFIED = "not modified"


NOT_MODIFIED: Final = _NotModified.NOT_MODIFIED
NotModified = Literal[_NotModified.NOT_MODIFIED]


@dataclass(frozen=True)
class Fetched:
    """A document read with its ETag (``etag`` None: the file does not exist)."""

    data: bytes | None
    etag: str | None


@dataclass(frozen=True)
class LabelsFetch:
    labels: Labels
    etag: str | None


@dataclass(frozen=True)
class IndexFetch:
    index: Index | None
    etag: str | None


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # without leading or trailing '/'; '' for the bucket's root

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


def parse_s3_url(text: str) -> S3Location:
    """``s3://BUCKET[/PREFIX]`` as a location; UsageError for anything else."""
    if not text.lower().startswith(SCHEME):
        raise UsageError(f"{excerpt(text)}: not an s3:// URL")
    rest = text[len(SCHEME) :]
    bucket, _, prefix = rest.partition("/")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise UsageError(
            f"{excerpt(text)}: the bucket name must be 3 to 63 lowercase letters, digits, '.' "
            "or '-' (s3://BUCKET/PREFIX)"
        )
    if "?" in rest or "#" in rest or "@" in bucket:
        raise UsageError(f"{excerpt(text)}: an s3:// URL takes no query, fragment or user")
    prefix = prefix.strip("/")
    if prefix and (problem := path_problem(prefix)):
        raise UsageError(f"{excerpt(text)}: the prefix {problem}")
    return S3Location(bucket, prefix)


def _error_code(exc: BaseException) -> str | None:
    match = _ERROR_CODE.search(str(exc))
    return match.group(1) if match else None


def _message_tail(exc: BaseException) -> str:
    """What went wrong, from obstore's message, without its debug dump: a short reason."""
    text = str(exc).split("\n\nDebug source:", 1)[0]
    if "error sending request" in text or ("Connect" in text and "HttpError" in text):
        return "cannot connect"
    if "timed out" in text.lower() or "timeout" in text.lower():
        return "timed out"
    return excerpt(text.split(": <?xml", 1)[0][-160:], 160).strip("'\"")


# A credentials file is a few lines; anything larger is not one.
MAX_CREDENTIALS_FILE_BYTES = 64 * 1024
# obstore's config key for each AWS variable and for each key of a credentials file's profile.
_CREDENTIAL_KEYS: Final = (
    ("access_key_id", "AWS_ACCESS_KEY_ID", "aws_access_key_id"),
    ("secret_access_key", "AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
    ("session_token", "AWS_SESSION_TOKEN", "aws_session_token"),
)


def credentials(env: Mapping[str, str]) -> dict[str, str]:
    """The keys ``env`` gives (``AWS_ACCESS_KEY_ID`` ...), else those of the profile
    ``AWS_PROFILE`` (or ``default``) of the file ``AWS_SHARED_CREDENTIALS_FILE``, when set, as
    obstore's config keys; empty without either. Keys in the environment win over the file, as
    with the AWS CLI. UsageError, naming the file and the profile but never a key, when the
    file cannot be read or lacks the pair."""
    found = {key: env[name] for key, name, _ in _CREDENTIAL_KEYS if env.get(name)}
    path = env.get("AWS_SHARED_CREDENTIALS_FILE")
    if "access_key_id" in found or not path:
        return found
    profile = env.get("AWS_PROFILE") or "default"
    where = f"AWS_SHARED_CREDENTIALS_FILE {path}"
    parser = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read(MAX_CREDENTIALS_FILE_BYTES + 1)
        if len(text) > MAX_CREDENTIALS_FILE_BYTES:
            raise UsageError(f"{where}: larger than {MAX_CREDENTIALS_FILE_BYTES} bytes")
        parser.read_string(text, source=path)
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{where}: cannot read it: {exc.__class__.__name__}") from exc
    except configparser.Error:
        # Neither the parser's message nor its exception: it quotes a line, which may hold a key.
        raise UsageError(f"{where}: not an INI file of [profile] sections") from None
    if not parser.has_section(profile):
        raise UsageError(f"{where}: no [{profile}] profile (AWS_PROFILE)")
    section = parser[profile]
    from_file = {key: section[name].strip() for key, _, name in _CREDENTIAL_KEYS if name in section}
    if not from_file.get("access_key_id") or not from_file.get("secret_access_key"):
        raise UsageError(
            f"{where}: profile [{profile}] needs aws_access_key_id and aws_secret_access_key"
        )
    return {**from_file, **found}


class S3Repository(Repository):
    """A repository under an S3 prefix (see the module docstring)."""

    def __init__(
        self,
        location: S3Location,
        *,
        environ: Mapping[str, str] | None = None,
        connect_timeout: timedelta = DEFAULT_CONNECT_TIMEOUT,
        timeout: timedelta = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        retry_timeout: timedelta = DEFAULT_RETRY_TIMEOUT,
    ) -> None:
        self.where = location
        self.location = location.url
        self.require_manifest = True
        env = os.environ if environ is None else environ
        self.endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or None
        config: S3Config = {
            "region": env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
        }
        if self.endpoint:
            config["endpoint"] = self.endpoint
        for name, value in credentials(env).items():
            config[name] = value  # type: ignore[literal-required]
        client: ClientConfig = {
            "allow_http": bool(self.endpoint and self.endpoint.lower().startswith("http://")),
            "connect_timeout": connect_timeout,
            "timeout": timeout,
        }
        retry: RetryConfig = {
            "max_retries": max_retries,
            "retry_timeout": retry_timeout,
            "backoff": {
                "init_backoff": timedelta(milliseconds=100),
                "max_backoff": timedelta(seconds=2),
                "base": 2,
            },
        }
        try:
            self.store = S3Store(
                location.bucket,
                prefix=location.prefix or None,
                config=config,
                client_options=client,
                retry_config=retry,
            )
        except Exception as exc:  # obstore's configuration errors (a bad endpoint URL, ...)
            raise UsageError(f"{self.location}: cannot configure S3: {_message_tail(exc)}") from exc
        self._etags: dict[str, str | None] = {}
        self._etag_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Repository({self.location!r})"

    # --- errors -------------------------------------------------------------------------------

    def _fail(self, exc: Exception, doing: str) -> NoReturn:
        """Raise the repository error ``exc`` (an obstore error) stands for, one line, no
        credentials: the server's error code and the endpoint at most."""
        code = _error_code(exc)
        if code == "NoSuchBucket":
            raise RepositoryNotFound(
                f"{self.location}: no such bucket {self.where.bucket!r}{self._at()}"
            ) from exc
        if (
            isinstance(exc, PermissionDeniedError | UnauthenticatedError)
            or code in _CREDENTIAL_CODES
        ):
            raise RepositoryError(
                f"{self.location}: access denied while {doing} ({code or 'forbidden'}): check "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, and that they may use the bucket"
            ) from exc
        raise RepositoryError(
            f"{self.location}: unreachable while {doing}{self._at()}: {_message_tail(exc)}"
        ) from exc

    def _at(self) -> str:
        return f" at {self.endpoint}" if self.endpoint else ""

    # --- objects ------------------------------------------------------------------------------

    def _list(self, prefix: str | None) -> list[ObjectMeta]:
        try:
            return [
                meta
                for chunk in obstore.list(self.store, prefix, chunk_size=_LIST_CHUNK)
                for meta in chunk
            ]
        except Exception as exc:
            self._fail(exc, "listing")

    def _get(self, key: str, max_bytes: int, *, if_none_match: str | None = None) -> Fetched:
        """The object's bytes and ETag (``Fetched(None, None)`` if absent); NotModifiedError
        propagates when ``if_none_match`` matches."""
        try:
            options: GetOptions = {"if_none_match": if_none_match} if if_none_match else {}
            result = obstore.get(self.store, key, options=options)
            meta = result.meta
            if meta["size"] > max_bytes:
                raise FormatError(
                    f"{self.location}/{key}: {meta['size']:,} bytes, more than the "
                    f"{max_bytes:,} allowed"
                )
            data = bytes(result.bytes())
        except (FileNotFoundError, NotModifiedError, FormatError):
            raise
        except Exception as exc:
            self._fail(exc, f"reading {key}")
        return Fetched(data, meta["e_tag"])

    def _read(self, key: str, max_bytes: int) -> Fetched:
        try:
            return self._get(key, max_bytes)
        except FileNotFoundError:
            return Fetched(None, None)

    def _put(self, key: str, data: bytes, mode: PutMode, doing: str) -> str | None:
        try:
            result = obstore.put(self.store, key, data, mode=mode, use_multipart=False)
        except (AlreadyExistsError, PreconditionError):
            raise
        except Exception as exc:
            self._fail(exc, doing)
        return result["e_tag"]

    def _delete(self, keys: list[str], doing: str) -> None:
        if not keys:
            return
        try:
            obstore.delete(self.store, keys)
        except FileNotFoundError:
            pass
        except Exception as exc:
            self._fail(exc, doing)

    # --- versions -----------------------------------------------------------------------------

    def _scan(self) -> tuple[dict[int, list[ObjectMeta]], dict[str, list[ObjectMeta]]]:
        """Every object under a version-like prefix, by version; and by prefix name, those of
        prefixes with no manifest (interrupted uploads or deletions)."""
        by_name: dict[str, list[ObjectMeta]] = {}
        for meta in self._list(None):
            name, slash, _ = meta["path"].partition("/")
            if slash and version_from_name(name) is not None:
                by_name.setdefault(name, []).append(meta)
        versions: dict[int, list[ObjectMeta]] = {}
        incomplete: dict[str, list[ObjectMeta]] = {}
        for name, objects in by_name.items():
            version = version_from_name(name)
            has_manifest = any(m["path"] == f"{name}/{MANIFEST_FILE}" for m in objects)
            if version is not None and has_manifest and name == str(version):
                versions[version] = objects
            else:
                incomplete[name] = objects
        return versions, incomplete

    def list_versions(self) -> list[VersionInfo]:
        versions, _ = self._scan()
        return [VersionInfo(v, str(v), True) for v in sorted(versions)]

    def _manifest_key(self, version: int) -> str:
        return f"{version}/{MANIFEST_FILE}"

    def read_manifest(self, version: int) -> ManifestRecord:
        version = check_version(version, "version")
        key = self._manifest_key(version)
        fetched = self._read(key, MAX_MANIFEST_BYTES)
        if fetched.data is None:
            raise UnknownVersion(f"{self.location}: no version {version}")
        where = f"{self.location}/{key}"
        manifest = Manifest.parse(parse_json(fetched.data, where), where)
        if manifest.version != version:
            raise FormatError(f"{where}: describes version {manifest.version}, not {version}")
        return ManifestRecord(manifest, hashlib.sha256(fetched.data).hexdigest())

    def _objects_of(self, version: int) -> dict[str, ObjectMeta]:
        prefix = f"{version}/"
        return {
            meta["path"][len(prefix) :]: meta
            for meta in self._list(str(version))
            if meta["path"].startswith(prefix)
        }

    def _check_listing(self, version: int, manifest: Manifest) -> list[str]:
        """Problems the listing shows already: files missing, extra, or of the wrong size."""
        objects = self._objects_of(version)
        objects.pop(MANIFEST_FILE, None)
        problems = []
        listed = {entry.path: entry for entry in manifest.files}
        for path, meta in sorted(objects.items()):
            entry = listed.get(path)
            if entry is None:
                problems.append(f"{path}: not in the manifest")
            elif meta["size"] != entry.size:
                problems.append(f"{path}: {meta['size']:,} bytes, the manifest says {entry.size:,}")
        problems.extend(f"{path}: missing" for path in sorted(set(listed) - set(objects)))
        return problems

    def _stream(self, key: str) -> Iterator[bytes]:
        try:
            result = obstore.get(self.store, key)
            for chunk in result.stream(min_chunk_size=_DOWNLOAD_CHUNK):
                yield bytes(chunk)
        except FileNotFoundError:
            raise
        except Exception as exc:
            self._fail(exc, f"reading {key}")

    def _hash_object(self, key: str, size: int, write: int | None = None) -> tuple[int, str]:
        """Size and sha256 of the object (read at most ``size + 1`` bytes), written to the file
        descriptor ``write`` as it comes."""
        digest = hashlib.sha256()
        seen = 0
        for chunk in self._stream(key):
            seen += len(chunk)
            if seen > size:
                break
            digest.update(chunk)
            if write is not None:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(write, view) :]
        return seen, digest.hexdigest()

    def verify_version(self, version: int) -> Manifest:
        manifest = self.read_manifest(version).manifest
        problems = self._check_listing(version, manifest)
        if not problems:
            for entry in manifest.files:
                try:
                    size, sha256 = self._hash_object(f"{version}/{entry.path}", entry.size)
                except FileNotFoundError:
                    problems.append(f"{entry.path}: missing")
                    continue
                if size != entry.size:
                    problems.append(f"{entry.path}: size differs from the manifest's")
                elif sha256 != entry.sha256:
                    problems.append(f"{entry.path}: sha256 {sha256} differs from the manifest's")
        _raise_if_any(f"{self.location}/{version}", problems)
        return manifest

    def unverified_size(self, version: int) -> tuple[int, int]:
        # Never needed: on S3 every version has a manifest.
        objects = self._objects_of(version)
        return sum(m["size"] for m in objects.values()), len(objects)

    def read_version_file(self, version: int, path: str, max_bytes: int) -> bytes:
        if problem := path_problem(path):
            raise FormatError(f"{path!r}: {problem}")
        try:
            fetched = self._get(f"{check_version(version, 'version')}/{path}", max_bytes)
        except NotModifiedError as exc:  # pragma: no cover - no condition was sent
            raise RepositoryError(f"{self.location}/{version}/{path}: unexpected 304") from exc
        assert fetched.data is not None
        return fetched.data

    def download_version(self, version: int, target: Path) -> Manifest:
        """Copy ``version`` into the new, empty directory ``target``: every file of its
        manifest, each size and sha256 checked as written, then the manifest itself (last).

        UnknownVersion; VerificationError (a file missing, extra, or differing from the
        manifest: ``target`` then holds a partial copy the caller removes); RepositoryError.
        """
        record = self.read_manifest(version)
        manifest = record.manifest
        problems = self._check_listing(version, manifest)
        _raise_if_any(f"{self.location}/{version}", problems)
        for entry in manifest.files:
            path = target / entry.path
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                try:
                    size, sha256 = self._hash_object(f"{version}/{entry.path}", entry.size, fd)
                except FileNotFoundError:
                    problems.append(f"{entry.path}: missing")
                    continue
                os.fsync(fd)
            finally:
                os.close(fd)
            if size != entry.size:
                problems.append(f"{entry.path}: size differs from the manifest's {entry.size:,}")
            elif sha256 != entry.sha256:
                problems.append(f"{entry.path}: sha256 {sha256} differs from the manifest's")
            _raise_if_any(f"{self.location}/{version}", problems)
        data = self._read(self._manifest_key(version), MAX_MANIFEST_BYTES).data
        if data is None or hashlib.sha256(data).hexdigest() != record.sha256:
            raise VerificationError(
                f"{self.location}/{version}: {MANIFEST_FILE} changed or vanished while downloaded"
            )
        (target / MANIFEST_FILE).write_bytes(data)
        return manifest

    # --- labels.json and index.json -----------------------------------------------------------

    def _read_tracked(self, name: str, max_bytes: int) -> Fetched:
        fetched = self._read(name, max_bytes)
        with self._etag_lock:
            self._etags[name] = fetched.etag
        return fetched

    def _write_tracked(self, name: str, data: bytes) -> None:
        """Replace ``name`` if it is still what we read last (If-Match its ETag), or create it
        if we found none (If-None-Match: *); WriteConflict otherwise."""
        with self._etag_lock:
            known = name in self._etags
            etag = self._etags.get(name)
        mode: PutMode
        if not known:
            mode = "overwrite"  # nothing read before: a plain replacement
        elif etag is None:
            mode = "create"
        else:
            mode = {"e_tag": etag}
        try:
            new_etag = self._put(name, data, mode, f"writing {name}")
        except (AlreadyExistsError, PreconditionError) as exc:
            with self._etag_lock:
                self._etags.pop(name, None)
            raise WriteConflict(
                f"{self.location}/{name}: changed by another writer meanwhile; nothing "
                "written, try again"
            ) from exc
        with self._etag_lock:
            self._etags[name] = new_etag

    def read_labels(self) -> Labels:
        fetched = self._read_tracked(LABELS_FILE, MAX_LABELS_BYTES)
        return _parse_labels(fetched.data, f"{self.location}/{LABELS_FILE}")

    def write_labels(self, labels: Labels) -> None:
        self._write_tracked(LABELS_FILE, dump_json(labels.to_document()))

    def read_index(self) -> Index | None:
        fetched = self._read_tracked(INDEX_FILE, MAX_INDEX_BYTES)
        return _parse_index(fetched.data, f"{self.location}/{INDEX_FILE}")

    def write_index(self, index: Index) -> None:
        self._write_tracked(INDEX_FILE, dump_json(index.to_document()))

    def fetch_labels(self, etag: str | None = None) -> LabelsFetch | NotModified:
        """labels.json and its ETag, or NOT_MODIFIED if its ETag is still ``etag`` (one
        conditional GET). Absent: ``Labels()`` with ETag None."""
        fetched = self._fetch(LABELS_FILE, MAX_LABELS_BYTES, etag)
        if fetched is NOT_MODIFIED:
            return NOT_MODIFIED
        return LabelsFetch(
            _parse_labels(fetched.data, f"{self.location}/{LABELS_FILE}"), fetched.etag
        )

    def fetch_index(self, etag: str | None = None) -> IndexFetch | NotModified:
        """index.json and its ETag, or NOT_MODIFIED (as ``fetch_labels``); absent: None."""
        fetched = self._fetch(INDEX_FILE, MAX_INDEX_BYTES, etag)
        if fetched is NOT_MODIFIED:
            return NOT_MODIFIED
        return IndexFetch(_parse_index(fetched.data, f"{self.location}/{INDEX_FILE}"), fetched.etag)

    def _fetch(self, name: str, max_bytes: int, etag: str | None) -> Fetched | NotModified:
        try:
            return self._get(name, max_bytes, if_none_match=etag)
        except NotModifiedError:
            return NOT_MODIFIED
        except FileNotFoundError:
            return Fetched(None, None)

    def rewrite_index(self) -> Index:
        """index.json from a listing, written conditionally (If-Match on the ETag read just
        before the listing): a concurrent writer's index makes us list again, so the last
        index written always saw every manifest uploaded before it."""
        for _ in range(CONFLICT_ATTEMPTS):
            try:
                return super().rewrite_index()
            except WriteConflict:
                continue
        raise WriteConflict(
            f"{self.location}/{INDEX_FILE}: other writers kept replacing it; try again"
        )

    # --- publish and delete -------------------------------------------------------------------

    def _refuse_existing(self, version: int) -> None:
        objects = self._list(f"{version}")
        if any(m["path"].startswith(f"{version}/") for m in objects):
            has_manifest = any(m["path"] == self._manifest_key(version) for m in objects)
            what = (
                "exists already (versions are immutable)"
                if has_manifest
                else "has objects left by an interrupted upload or deletion (xor-models gc "
                "removes them once an hour old); publish another number"
            )
            raise VersionExists(f"{self.location}: version {version} {what}")

    def publish(self, source: Path, version: int) -> VersionInfo:
        """Upload ``source`` as ``version``: every file (each PUT with If-None-Match: *), its
        manifest last, then index.json from a listing. The bytes uploaded are the bytes hashed:
        each file is read once, checked against the manifest, and sent as read."""
        version = check_version(version, "version")
        source = Path(source)
        if not source.is_dir():
            raise RepositoryError(f"{source}: not a directory to publish")
        try:
            manifest, manifest_data = read_manifest_file(source, version)
        except FileNotFoundError:
            manifest = build_manifest(source, version)
            manifest_data = dump_json(manifest.to_document())
        self._refuse_existing(version)
        # Refuse a source that does not match its manifest before anything is uploaded.
        verify_files(source, manifest)
        started = time.monotonic()
        for entry in manifest.files:
            data = _read_checked(source, entry.path, entry.size, entry.sha256)
            self._create(f"{version}/{entry.path}", data, version)
        self._create(self._manifest_key(version), manifest_data, version)
        log.info(
            "published version %d to %s (%d files, %d bytes, %.2f s)",
            version,
            self.location,
            len(manifest.files),
            manifest.total_size,
            time.monotonic() - started,
        )
        try:
            self.rewrite_index()
        except RepositoryError as exc:
            log.warning("version %d published, but %s not rewritten: %s", version, INDEX_FILE, exc)
        return VersionInfo(version, str(version), True)

    def _create(self, key: str, data: bytes, version: int) -> None:
        try:
            self._put(key, data, "create", f"uploading {key}")
        except (AlreadyExistsError, PreconditionError) as exc:
            raise VersionExists(
                f"{self.location}: version {version} is being published by another writer "
                f"({key} exists); publish another number"
            ) from exc

    def delete_version(self, version: int) -> None:
        """The manifest first (from then on it is no version), then every other object."""
        self.read_manifest(version)  # UnknownVersion if it is none
        self._delete([self._manifest_key(version)], f"deleting version {version}")
        rest = [m["path"] for m in self._list(str(version)) if m["path"].startswith(f"{version}/")]
        self._delete(rest, f"deleting version {version}")
        log.info("deleted version %d from %s", version, self.location)

    def leftovers(self, older_than_seconds: float = STALE_SECONDS) -> list[str]:
        """Version prefixes without a manifest whose newest object is older than the age (an
        upload in progress is younger; a deletion's rest is as old as its upload)."""
        _, incomplete = self._scan()
        cutoff = datetime.now(UTC) - timedelta(seconds=older_than_seconds)
        return sorted(
            name
            for name, objects in incomplete.items()
            if max(m["last_modified"] for m in objects) < cutoff
        )

    def remove_leftover(self, name: str) -> None:
        if version_from_name(name) is None or "/" in name:
            raise ValueError(f"not a leftover: {name!r}")
        objects = [m["path"] for m in self._list(name) if m["path"].startswith(f"{name}/")]
        if f"{name}/{MANIFEST_FILE}" in objects:
            raise ValueError(f"not a leftover: {name!r} is a version")
        self._delete(objects, f"removing {name}/")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """No lock on S3: writes inside are conditional instead (see the module docstring)."""
        yield


def _read_checked(source: Path, path: str, size: int, sha256: str) -> bytes:
    """The bytes of ``source/path``, if they are what the manifest says (read once: what is
    hashed is what is uploaded)."""
    file = source / path
    if size > MAX_SINGLE_PUT:
        raise RepositoryError(f"{file}: {size:,} bytes, more than one S3 PUT takes (5 GiB)")
    try:
        with open(file, "rb", buffering=0) as handle:
            data = handle.read(size + 1)
    except OSError as exc:
        raise RepositoryError(f"{file}: unreadable: {exc.strerror or exc}") from exc
    if len(data) != size or hashlib.sha256(data).hexdigest() != sha256:
        raise VerificationError(f"{source}: fails its manifest: {path} changed while uploaded")
    return data


def _raise_if_any(where: str, problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:5])
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise VerificationError(f"{where}: fails its manifest: {shown}{more}")


def _parse_labels(data: bytes | None, where: str) -> Labels:
    return Labels() if data is None else Labels.parse(parse_json(data, where), where)


def _parse_index(data: bytes | None, where: str) -> Index | None:
    return None if data is None else Index.parse(parse_json(data, where), where)
