"""Parsing the repository's documents: what is accepted, and each way of being wrong."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from app.lifecycle.discovery import version_of as discovery_version_of
from modelrepo.errors import FormatError, UsageError
from modelrepo.format import (
    MAX_HISTORY,
    MAX_LABELS,
    MAX_VERSION,
    FileEntry,
    Index,
    Labels,
    Manifest,
    check_label_name,
    parse_percent_argument,
    parse_version_argument,
    version_from_name,
    version_number,
)
from training.versions import version_of as training_version_of

SHA = "0123456789abcdef" * 4
MANIFEST: dict[str, Any] = {
    "format": 1,
    "version": 7,
    "files": [
        {"path": "assets.extra/evaluation.json", "size": 10, "sha256": SHA},
        {"path": "saved_model.pb", "size": 0, "sha256": SHA},
        {"path": "variables/variables.index", "size": 3, "sha256": SHA},
    ],
}


def changed(document: dict[str, Any], *path: Any, value: Any = None, drop: bool = False) -> Any:
    result = copy.deepcopy(document)
    node = result
    for key in path[:-1]:
        node = node[key]
    if drop:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return result


def test_a_valid_manifest_round_trips() -> None:
    manifest = Manifest.parse(MANIFEST, "m")
    assert manifest.version == 7
    assert [entry.path for entry in manifest.files] == [
        "assets.extra/evaluation.json",
        "saved_model.pb",
        "variables/variables.index",
    ]
    assert manifest.total_size == 13
    assert manifest.to_document() == MANIFEST


def test_build_sorts_the_files() -> None:
    files = [
        FileEntry(entry["path"], entry["size"], entry["sha256"]) for entry in MANIFEST["files"]
    ]
    assert Manifest.build(7, list(reversed(files))).to_document() == MANIFEST


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ([], "m: must be a JSON object, got list"),
        (changed(MANIFEST, "extra", value=1), "m: unknown key 'extra'"),
        (changed(MANIFEST, "files", drop=True), "m: missing key 'files'"),
        (changed(MANIFEST, "format", value=2), "m: format: format 2 is not supported"),
        (changed(MANIFEST, "format", value=True), "m: format: format True is not supported"),
        (changed(MANIFEST, "version", value=0), "m: version: must be a version"),
        (changed(MANIFEST, "version", value=MAX_VERSION + 1), "m: version: must be a version"),
        (changed(MANIFEST, "version", value=7.0), "m: version: must be a version"),
        (changed(MANIFEST, "version", value=True), "m: version: must be a version"),
        (changed(MANIFEST, "files", value={}), "m: files: must be a JSON array"),
        (changed(MANIFEST, "files", 0, "path", value="/etc/passwd"), "files[0].path: must be a"),
        (changed(MANIFEST, "files", 0, "path", value="a/../b"), "files[0].path: must be a"),
        (changed(MANIFEST, "files", 0, "path", value="a//b"), "files[0].path: must be a"),
        (changed(MANIFEST, "files", 0, "path", value="./a"), "files[0].path: must be a"),
        (changed(MANIFEST, "files", 0, "path", value=""), "files[0].path: must be a non-empty"),
        (changed(MANIFEST, "files", 0, "path", value="a\\b"), "files[0].path: must not hold"),
        (changed(MANIFEST, "files", 0, "path", value="a\x00"), "files[0].path: must not hold"),
        (changed(MANIFEST, "files", 0, "path", value="x" * 1025), "at most 1024 characters"),
        (changed(MANIFEST, "files", 0, "path", value="MANIFEST.json"), "does not list itself"),
        (changed(MANIFEST, "files", 0, "size", value=-1), "files[0].size: must be an integer"),
        (changed(MANIFEST, "files", 0, "size", value=True), "files[0].size: must be an integer"),
        (changed(MANIFEST, "files", 0, "size", value=1.5), "files[0].size: must be an integer"),
        (changed(MANIFEST, "files", 0, "size", value=2**63), "files[0].size: must be an integer"),
        (changed(MANIFEST, "files", 0, "sha256", value=SHA.upper()), "files[0].sha256: must be"),
        (changed(MANIFEST, "files", 0, "sha256", value=SHA[:-1]), "files[0].sha256: must be"),
        (changed(MANIFEST, "files", 0, "mode", value=1), "files[0]: unknown key 'mode'"),
        (changed(MANIFEST, "files", 1, "path", value="a"), "paths must be sorted and unique"),
        (
            changed(MANIFEST, "files", 1, "path", value="assets.extra/evaluation.json"),
            "paths must be sorted and unique",
        ),
        (
            changed(MANIFEST, "files", 1, "path", value="saved_model.pc"),
            "does not list saved_model.pb",
        ),
    ],
)
def test_a_broken_manifest_is_refused_naming_what(document: Any, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        Manifest.parse(document, "m")
    assert message in str(caught.value)


def test_a_path_listed_as_file_and_directory_is_refused() -> None:
    document = changed(MANIFEST, "files", 0, "path", value="saved_model.pa")
    document["files"].insert(1, {"path": "saved_model.pa/x", "size": 1, "sha256": SHA})
    with pytest.raises(FormatError, match=r"'saved_model\.pa' is listed as a file and as the dir"):
        Manifest.parse(document, "m")


LABELS: dict[str, Any] = {
    "labels": {"stable": 1796012636, "canary": 1796013446},
    "canary_percent": 0,
    "history": {"stable": [1796010000, 1796011000]},
}


def test_valid_labels_round_trip() -> None:
    labels = Labels.parse(LABELS, "l")
    assert dict(labels.labels) == {"canary": 1796013446, "stable": 1796012636}
    assert labels.history["stable"] == (1796010000, 1796011000)
    assert Labels.parse(labels.to_document(), "l") == labels


def test_only_labels_is_required() -> None:
    assert Labels.parse({"labels": {}}, "l") == Labels()


@pytest.mark.parametrize(
    "document",
    [
        changed(LABELS, "labels", "a" * 63, value=1),
        changed(LABELS, "labels", "a-1", value=MAX_VERSION),
        changed(LABELS, "canary_percent", value=100),
        changed(LABELS, "history", "stable", value=list(range(1, MAX_HISTORY + 1))),
        {"labels": {f"l{n}": 1 for n in range(MAX_LABELS)}},
    ],
)
def test_labels_at_the_boundaries_are_accepted(document: Any) -> None:
    Labels.parse(document, "l")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("x", "l: must be a JSON object, got str"),
        ({}, "l: missing key 'labels'"),
        (changed(LABELS, "owner", value="me"), "l: unknown key 'owner'"),
        (changed(LABELS, "labels", value=[]), "l: labels: must be a JSON object, got list"),
        (changed(LABELS, "labels", "Stable", value=1), "a label name is a lowercase letter"),
        (changed(LABELS, "labels", "1st", value=1), "a label name is a lowercase letter"),
        (changed(LABELS, "labels", "a_b", value=1), "a label name is a lowercase letter"),
        (changed(LABELS, "labels", "", value=1), "a label name is a lowercase letter"),
        (changed(LABELS, "labels", "a" * 64, value=1), "at most 63 characters"),
        (changed(LABELS, "labels", "stable", value=True), "labels['stable']: must be a version"),
        (changed(LABELS, "labels", "stable", value="5"), "labels['stable']: must be a version"),
        (changed(LABELS, "labels", "stable", value=0), "labels['stable']: must be a version"),
        (changed(LABELS, "labels", "stable", value=2**63), "labels['stable']: must be a version"),
        (changed(LABELS, "labels", "stable", value=5.0), "labels['stable']: must be a version"),
        (changed(LABELS, "canary_percent", value=101), "canary_percent: must be an integer 0 to"),
        (changed(LABELS, "canary_percent", value=-1), "canary_percent: must be an integer 0 to"),
        (changed(LABELS, "canary_percent", value=True), "canary_percent: must be an integer 0"),
        (changed(LABELS, "canary_percent", value=2.5), "canary_percent: must be an integer 0"),
        (changed(LABELS, "history", value=[]), "history: must be a JSON object"),
        (changed(LABELS, "history", "stable", value=5), "history['stable']: must be a JSON arr"),
        (changed(LABELS, "history", "Bad", value=[]), "history: a label name is"),
        (changed(LABELS, "history", "stable", 0, value=False), "history['stable'][0]: must be"),
        (
            changed(LABELS, "history", "stable", value=list(range(1, MAX_HISTORY + 2))),
            f"at most {MAX_HISTORY} entries, got {MAX_HISTORY + 1}",
        ),
        ({"labels": {f"l{n}": 1 for n in range(MAX_LABELS + 1)}}, "at most 100 labels"),
    ],
)
def test_broken_labels_are_refused_naming_what(document: Any, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        Labels.parse(document, "l")
    assert message in str(caught.value)


def test_promoting_keeps_the_previous_value_bounded() -> None:
    labels = Labels()
    for version in range(1, MAX_HISTORY + 4):
        labels = labels.with_label("stable", version)
    assert labels.labels["stable"] == MAX_HISTORY + 3
    assert labels.history["stable"] == tuple(range(3, MAX_HISTORY + 3))  # the oldest dropped
    assert labels.with_label("stable", MAX_HISTORY + 3) is labels  # no duplicate entry


def test_rolling_back_pops_the_history() -> None:
    labels = Labels().with_label("stable", 1).with_label("stable", 2).with_label("stable", 3)
    once = labels.rolled_back("stable")
    assert (once.labels["stable"], once.history["stable"]) == (2, (1,))
    twice = once.rolled_back("stable")
    assert twice.labels["stable"] == 1 and "stable" not in twice.history


def test_versions_in_use_names_labels_and_histories() -> None:
    labels = Labels.parse(LABELS, "l")
    assert labels.versions_in_use() == {
        1796012636: ["label stable"],
        1796013446: ["label canary"],
        1796010000: ["history of stable"],
        1796011000: ["history of stable"],
    }


INDEX: dict[str, Any] = {"format": 1, "versions": [{"version": 1, "manifest_sha256": SHA}]}


def test_a_valid_index_round_trips() -> None:
    assert Index.parse(INDEX, "i").to_document() == INDEX


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (changed(INDEX, "format", value="1"), "i: format: format '1' is not supported"),
        (changed(INDEX, "versions", 0, "version", value=True), "versions[0].version: must be"),
        (changed(INDEX, "versions", 0, "manifest_sha256", value="x"), "manifest_sha256: must"),
        (changed(INDEX, "versions", 0, "size", value=1), "versions[0]: unknown key 'size'"),
        (
            changed(INDEX, "versions", value=[INDEX["versions"][0]] * 2),
            "versions must be ascending and unique",
        ),
    ],
)
def test_a_broken_index_is_refused(document: Any, message: str) -> None:
    with pytest.raises(FormatError) as caught:
        Index.parse(document, "i")
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("name", "version"),
    [
        ("1", 1),
        ("007", 7),
        (str(MAX_VERSION), MAX_VERSION),
        (str(MAX_VERSION + 1), None),
        ("0", None),
        ("-3", None),
        ("1.5", None),
        ("\u00b2", None),
        ("abc", None),
        (".tmp-publish-1", None),
        ("labels.json", None),
    ],
)
def test_version_names_are_read_as_the_server_reads_them(name: str, version: int | None) -> None:
    assert version_from_name(name) == version
    # The unbounded reading (what a server lists, to refuse past MAX_VERSION by name) differs
    # only there; app/ and training/ read directory names with it.
    beyond = name == str(MAX_VERSION + 1)
    assert version_number(name) == (MAX_VERSION + 1 if beyond else version)
    assert discovery_version_of(Path(name)) == version_number(name)
    assert training_version_of(Path(name)) == version_number(name)


@pytest.mark.parametrize("text", ["0", "-1", "1e3", "\u00b2", "", str(MAX_VERSION + 1), " 5"])
def test_bad_version_arguments_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="a version is an integer 1 to 2\\*\\*63-1"):
        parse_version_argument(text)


@pytest.mark.parametrize("text", ["-1", "101", "50.5", "", "1000", "\u0661"])
def test_bad_percentages_are_usage_errors(text: str) -> None:
    with pytest.raises(UsageError, match="the canary percentage is an integer 0 to 100"):
        parse_percent_argument(text)


def test_label_names_typed_by_a_user_are_checked() -> None:
    assert check_label_name("canary-2") == "canary-2"
    with pytest.raises(UsageError, match="a label name is a lowercase letter"):
        check_label_name("Canary")
