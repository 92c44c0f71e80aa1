"""The model repository: its format, local repositories, and the ``xor-models`` command.

Both ``app/`` and ``training/`` import this package; it imports neither (nor TensorFlow).

Format 1
========

A repository is a directory, or an S3 prefix (``modelrepo/s3.py``: the same keys), holding:

``<version>/``
    One published model. ``<version>`` is a positive integer in ASCII digits, 1 to 2**63-1
    (int64, as the server and TF Serving read it); any other name (``.tmp-*``, ``abc``,
    ``1.5``, a number beyond int64) is not a version, and readers ignore it. Publishing writes
    the version under a ``.tmp-`` name inside the repository and renames it into place, so
    readers never see a partial version. Versions are immutable: publishing a number that
    exists is refused; a version is replaced only by deleting it and publishing another number.

``<version>/MANIFEST.json``
    Written last, so a version with its manifest is complete::

        {"format": 1, "version": 1796012636, "files": [
            {"path": "assets.extra/evaluation.json", "size": 912, "sha256": "<64 hex>"},
            {"path": "saved_model.pb", "size": 80213, "sha256": "<64 hex>"}, ...]}

    ``version`` is the directory's number. ``files`` lists every file of the version except
    the manifest itself: relative POSIX paths (no leading ``/``, no ``.`` or ``..`` or empty
    parts, no ``\\`` or NUL, at most 1,024 characters), sorted by code point and unique; ``size``
    in bytes; ``sha256`` as 64 lowercase hex digits. It must list ``saved_model.pb``.
    Directories are not listed (S3 has none); an empty directory is allowed.

    A version *verifies* when every listed file exists as a regular file of that size and
    sha256, and no other file is there: an unlisted file is an error, as a changed one is
    (versions are immutable). A version holds regular files and directories only: a symlink
    anywhere in it, the version directory included, fails verification (S3 has no symlinks,
    and a followed link would vouch for bytes outside the version); so does a FIFO, device or
    socket, which is never opened for a blocking read.

    In a plain local directory, an integer directory with a ``saved_model.pb`` and no manifest
    is still a version (hand-dropped, or exported before manifests existed), listed as
    *unverified*. Where a manifest is required (``require_manifest=True``: on S3, and in a
    server's cache of S3, in later versions) a version without one does not exist.

``labels.json``
    Which version each label names, the canary's share, and each label's previous values::

        {"labels": {"stable": 1796012636, "canary": 1796013446},
         "canary_percent": 0,
         "history": {"stable": [1796010000, 1796011000]}}

    ``labels`` is required; ``canary_percent`` (default 0) and ``history`` (default ``{}``)
    are optional. Label names match ``[a-z][a-z0-9-]*``, at most 63 characters, at most 100
    labels. Values are versions (integers 1 to 2**63-1; ``true`` is not an integer, nor is
    ``1.0``). ``canary_percent`` is an integer 0 to 100: that share of the requests that name
    no version or label goes to the ``canary`` label (ignored without one).
    ``history[label]`` lists the label's previous values, oldest first, at most 20 (the oldest
    are dropped): promoting appends the value it replaces; rolling back moves the label to the
    last entry and removes it. Parsing is strict: unknown or duplicate keys, a wrong type,
    ``NaN``, a file over 1 MiB or anything but a regular file is an error naming the file and
    the key. No labels.json means no labels: the server serves the newest version, as before.
    The file is replaced in one step (a temporary file in the same directory, fsync, rename;
    on S3 one PUT): a reader sees the old file or the new one.

``index.json``
    The versions that have a manifest, ascending, each with the sha256 of its MANIFEST.json's
    bytes, so a reader can see what changed without listing the repository::

        {"format": 1, "versions": [{"version": 1796012636, "manifest_sha256": "<64 hex>"}]}

    Rewritten from a listing after each publish and gc (replaced in one step, as labels.json),
    so a stale one is repaired by the next. It is a hint: the listing is the truth.

``.modelrepo.lock``
    Writers (``xor-models``, training) hold an exclusive ``flock`` on it around each
    read-modify-write of labels.json, index.json and the set of versions, so two at once never
    lose an update. Created by the first change; readers never take it.

Leftovers
    ``.tmp-*`` entries are publications or writes in progress (or interrupted), and
    ``.deleting-*`` versions being deleted; readers ignore both, and ``xor-models gc`` removes
    deletions' at once and temporary ones once they are an hour old.
"""

from modelrepo.errors import ModelRepoError
from modelrepo.format import Index, Labels, Manifest
from modelrepo.repository import LocalRepository, Repository, open_repository

__all__ = [
    "Index",
    "Labels",
    "LocalRepository",
    "Manifest",
    "ModelRepoError",
    "Repository",
    "open_repository",
]
