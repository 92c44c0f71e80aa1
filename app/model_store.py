"""The model store: finds version directories, loads and checks them, swaps the served one.

A version is ``<model_dir>/<n>/`` where ``n`` matches ``[0-9]+``, is positive, and the directory
holds a ``saved_model.pb``; every other entry (``.tmp-export-*``, ``abc``, ``1.5``, ``²``) is
ignored. A version is served only after all of these passed, in a background thread:

1. ``assets.extra/evaluation.json`` is an object whose ``model_version`` is the directory's
   number and whose ``metrics.accuracy`` is a finite number;
2. ``tf.saved_model.load`` (plain TensorFlow: no Keras, no project code) succeeds;
3. its ``serving_default`` signature takes ``inputs`` float32 [None, 2] and returns the
   Estimator head's outputs with the expected dtypes and shapes;
4. a warm-up call on the four XOR pairs returns finite, well-shaped outputs.

The store keeps the newest ``keep`` valid versions loaded (``XOR_LOADED_VERSIONS``), as one
immutable tuple, newest first, replaced by one reference assignment: a request reads
:attr:`ModelStore.current` (the newest) or :meth:`ModelStore.get` once and finishes on that
model, so no request fails or waits while a newer version loads, and a client pinned to an
older version keeps being answered until that version falls out of the window (its model is
then released). Only versions that would enter the window are considered (at startup: the
newest ones that pass, falling back past broken ones). A version that fails is remembered with
a fingerprint of its files and retried only when its files change.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import saved_model_pb2

from app.errors import ModelLoadError
from app.rowgroups import group_rows

log = logging.getLogger(__name__)

SIGNATURE_KEY = "serving_default"
INPUT_NAME = "inputs"
EVALUATION_FILE = Path("assets.extra") / "evaluation.json"
_VERSION_NAME = re.compile(r"[0-9]+")

# Output name -> (dtype, static shape) of the Estimator binary classification head.
EXPECTED_OUTPUTS: dict[str, tuple[str, tuple[int | None, ...]]] = {
    "logits": ("float32", (None, 1)),
    "logistic": ("float32", (None, 1)),
    "probabilities": ("float32", (None, 2)),
    "class_ids": ("int64", (None, 1)),
    "classes": ("string", (None, 1)),
}
WARMUP_INPUTS = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)

Fingerprint = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: list[int | None]


@dataclass(frozen=True)
class SignatureInfo:
    key: str
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]


class LoadedModel:
    """One loaded, checked and warmed-up version; immutable, and usable from any thread.

    Self-contained, so several versions can be held at once (version pinning).
    """

    def __init__(
        self,
        *,
        version: int,
        path: Path,
        root: Any,
        signature: Any,
        signature_info: SignatureInfo,
        signature_defs: dict[str, Any],
        evaluation: dict[str, Any],
        load_seconds: float,
    ) -> None:
        self.version = version
        self.path = path
        # The loaded object owns the variables the signature reads: keep it alive.
        self._root = root
        self._signature = signature
        self.signature_info = signature_info
        # The SavedModel's SignatureDefs as TF Serving renders them in its metadata (JSON).
        self.signature_defs = signature_defs
        self.evaluation = evaluation
        self.load_seconds = load_seconds
        self.loaded_at = dt.datetime.now(dt.UTC)

    @property
    def loaded_at_text(self) -> str:
        return self.loaded_at.strftime("%Y-%m-%dT%H:%M:%S.") + (
            f"{self.loaded_at.microsecond // 1000:03d}Z"
        )

    @property
    def metrics(self) -> dict[str, float | int]:
        """The evaluation's numeric metrics, as written (global_step stays an integer)."""
        return _numeric_metrics(self.evaluation["metrics"])

    def run(self, features: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[Any]]:
        """The serving signature's outputs for a float32 [n, 2] batch, row i answering row i.

        One signature call on the batch's distinct rows; a repeated row shares the outputs of
        its first occurrence. The model is a pure function of a row, so nothing changes but
        the cost: a batch of bits has at most 4 distinct rows, and a 10,000-pair request is a
        4-row call, not a 10,000-row one (whose string output alone is 10,000 Python objects),
        and equal pairs of a batch get bit-identical answers. (A row's last float bit may
        still depend on how many rows the call had, as matrix kernels round by batch shape.)
        """
        groups = group_rows(features)
        rows = features if groups is None else features[groups.first]
        outputs = self._signature(**{INPUT_NAME: tf.constant(rows, dtype=tf.float32)})
        if groups is None:
            return {name: tensor.numpy() for name, tensor in outputs.items()}
        return {name: tensor.numpy()[groups.inverse] for name, tensor in outputs.items()}


class LoadObserver(Protocol):
    """Told about every load attempt (the metrics implement it)."""

    def load_finished(self, *, success: bool, seconds: float) -> None: ...


def _numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float | int]:
    return {
        name: value
        for name, value in metrics.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    }


def version_of(entry: Path) -> int | None:
    """The version an entry's name stands for (a positive integer), or None."""
    if _VERSION_NAME.fullmatch(entry.name) and int(entry.name) > 0:
        return int(entry.name)
    return None


def find_versions(model_dir: Path) -> list[tuple[int, Path]]:
    """Versions with a ``saved_model.pb`` in ``model_dir``, newest first."""
    try:
        entries = list(model_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = [
        (version, entry)
        for entry in entries
        if (version := version_of(entry)) is not None and (entry / "saved_model.pb").is_file()
    ]
    return sorted(found, key=lambda item: item[0], reverse=True)


def fingerprint(path: Path) -> Fingerprint:
    """Relative paths, sizes and mtimes of every file under ``path``: changes when it does."""
    entries = []
    for directory, _, files in os.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            try:
                stat = os.stat(full)
            except OSError:
                continue
            entries.append((os.path.relpath(full, path), stat.st_size, stat.st_mtime_ns))
    return tuple(sorted(entries))


def read_evaluation(path: Path, version: int, min_accuracy: float = 0.0) -> dict[str, Any]:
    """The version's evaluation.json, checked: model_version matches, accuracy is a number
    of at least ``min_accuracy`` (the serving gate)."""
    file = path / EVALUATION_FILE
    try:
        document = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{file}: missing") from exc
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ModelLoadError(f"{file}: unreadable: {exc}") from exc
    if not isinstance(document, dict):
        raise ModelLoadError(f"{file}: must be a JSON object")
    declared = document.get("model_version")
    if type(declared) is not int or declared != version:
        raise ModelLoadError(
            f"{file}: model_version is {declared!r}, but the directory is version {version}"
        )
    metrics = document.get("metrics")
    if not isinstance(metrics, dict):
        raise ModelLoadError(f"{file}: 'metrics' must be an object")
    accuracy = metrics.get("accuracy")
    if (
        not isinstance(accuracy, int | float)
        or isinstance(accuracy, bool)
        or not math.isfinite(accuracy)
    ):
        raise ModelLoadError(f"{file}: metrics.accuracy must be a number, got {accuracy!r}")
    if accuracy < min_accuracy:
        raise ModelLoadError(
            f"{file}: accuracy {accuracy} is below the serving gate "
            f"(min_accuracy {min_accuracy}): refused"
        )
    return document


def _tensor_info(name: str, spec: Any) -> TensorInfo:
    shape = spec.shape.as_list() if spec.shape.rank is not None else []
    return TensorInfo(name=name, dtype=spec.dtype.name, shape=shape)


def check_signature(signature: Any, where: Path) -> SignatureInfo:
    """The signature's input and outputs, or ModelLoadError saying what differs."""
    args, kwargs = signature.structured_input_signature
    if args or set(kwargs) != {INPUT_NAME}:
        raise ModelLoadError(
            f"{where}: signature {SIGNATURE_KEY!r} must take exactly {INPUT_NAME!r}, "
            f"takes {sorted(kwargs)} (+{len(args)} positional)"
        )
    spec = kwargs[INPUT_NAME]
    if spec.dtype != tf.float32 or not spec.shape.is_compatible_with([None, 2]):
        raise ModelLoadError(
            f"{where}: input {INPUT_NAME!r} must be float32 [None, 2], "
            f"is {spec.dtype.name} {spec.shape}"
        )
    outputs = signature.structured_outputs
    if not isinstance(outputs, Mapping):
        raise ModelLoadError(f"{where}: signature outputs must be named")
    for name, (dtype, shape) in EXPECTED_OUTPUTS.items():
        output = outputs.get(name)
        if output is None:
            raise ModelLoadError(f"{where}: signature has no output {name!r}")
        if output.dtype.name != dtype or not output.shape.is_compatible_with(shape):
            raise ModelLoadError(
                f"{where}: output {name!r} must be {dtype} {list(shape)}, "
                f"is {output.dtype.name} {output.shape}"
            )
    return SignatureInfo(
        key=SIGNATURE_KEY,
        inputs=[_tensor_info(INPUT_NAME, spec)],
        outputs=[_tensor_info(name, outputs[name]) for name in sorted(outputs)],
    )


def _tensor_info_json(info: Any) -> dict[str, Any]:
    # Field order and defaults as TF Serving prints a TensorInfo proto (int64 as strings).
    return {
        "dtype": types_pb2.DataType.Name(info.dtype),
        "tensor_shape": {
            "dim": [{"size": str(dim.size), "name": dim.name} for dim in info.tensor_shape.dim],
            "unknown_rank": bool(info.tensor_shape.unknown_rank),
        },
        "name": info.name,
    }


def read_signature_defs(path: Path) -> dict[str, Any]:
    """The ``serve`` MetaGraph's SignatureDefs in ``saved_model.pb``, as JSON like TF Serving's.

    ``serving_default`` first, then the others (e.g. ``__saved_model_init_op``) by name.
    """
    saved_model = saved_model_pb2.SavedModel()
    try:
        saved_model.ParseFromString((path / "saved_model.pb").read_bytes())
    except Exception as exc:  # OSError or protobuf's DecodeError
        raise ModelLoadError(f"{path}: saved_model.pb is unreadable: {exc}") from exc
    graphs = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise ModelLoadError(f"{path}: saved_model.pb has no MetaGraph tagged 'serve'")
    signatures = graphs[0].signature_def
    keys = sorted(signatures, key=lambda key: (key != SIGNATURE_KEY, key))
    return {
        key: {
            "inputs": {
                n: _tensor_info_json(signatures[key].inputs[n])
                for n in sorted(signatures[key].inputs)
            },
            "outputs": {
                n: _tensor_info_json(signatures[key].outputs[n])
                for n in sorted(signatures[key].outputs)
            },
            "method_name": signatures[key].method_name,
        }
        for key in keys
    }


def warm_up(model: LoadedModel) -> None:
    """Run the four XOR pairs once: outputs must be finite and shaped as the contract says."""
    try:
        outputs = model.run(WARMUP_INPUTS)
    except Exception as exc:
        raise ModelLoadError(f"{model.path}: warm-up call failed: {exc}") from exc
    rows = len(WARMUP_INPUTS)
    for name, (_, shape) in EXPECTED_OUTPUTS.items():
        expected = (rows, *shape[1:])
        if outputs[name].shape != expected:
            raise ModelLoadError(
                f"{model.path}: warm-up output {name!r} has shape {outputs[name].shape}, "
                f"expected {expected}"
            )
    for name in ("logits", "logistic", "probabilities"):
        if not np.all(np.isfinite(outputs[name])):
            raise ModelLoadError(f"{model.path}: warm-up output {name!r} is not finite")
    if not np.allclose(outputs["probabilities"].sum(axis=1), 1.0, atol=1e-3):
        raise ModelLoadError(f"{model.path}: warm-up probabilities do not sum to 1")
    if not np.all(np.isin(outputs["class_ids"], (0, 1))):
        raise ModelLoadError(f"{model.path}: warm-up class_ids are not 0 or 1")


def load_version(path: Path, version: int, min_accuracy: float = 0.0) -> LoadedModel:
    """Load, check and warm up one version directory, or raise ModelLoadError.

    A version whose evaluated accuracy is below ``min_accuracy`` is refused before TensorFlow
    loads anything.
    """
    start = time.perf_counter()
    evaluation = read_evaluation(path, version, min_accuracy)
    try:
        root = tf.saved_model.load(str(path))
    except Exception as exc:
        raise ModelLoadError(f"{path}: not a loadable SavedModel: {exc}") from exc
    signatures = getattr(root, "signatures", {})
    if SIGNATURE_KEY not in signatures:
        raise ModelLoadError(f"{path}: no {SIGNATURE_KEY!r} signature (has {sorted(signatures)})")
    signature = signatures[SIGNATURE_KEY]
    info = check_signature(signature, path)
    model = LoadedModel(
        version=version,
        path=path,
        root=root,
        signature=signature,
        signature_info=info,
        signature_defs=read_signature_defs(path),
        evaluation=evaluation,
        load_seconds=0.0,
    )
    warm_up(model)
    model.load_seconds = time.perf_counter() - start
    return model


@dataclass
class _Failure:
    fingerprint: Fingerprint
    error: str


@dataclass
class _State:
    failures: dict[int, _Failure] = field(default_factory=dict)
    reason: str = "the model store has not scanned the model directory yet"
    # Fingerprints of the loaded versions' files when they were loaded.
    loaded_prints: dict[int, Fingerprint] = field(default_factory=dict)
    # Loaded versions whose files are gone or changed on disk since they were loaded.
    file_problems: dict[int, str] = field(default_factory=dict)


class ModelStore:
    """Discovers, loads and serves versions from ``model_dir``; see the module docstring."""

    def __init__(
        self,
        model_dir: Path,
        observer: LoadObserver | None = None,
        *,
        keep: int = 1,
        min_accuracy: float = 0.0,
    ) -> None:
        if keep < 1:
            raise ValueError(f"keep must be at least 1, got {keep}")
        if not 0.0 <= min_accuracy <= 1.0:
            raise ValueError(f"min_accuracy must be within [0, 1], got {min_accuracy}")
        self.model_dir = model_dir
        self.keep = keep
        self.min_accuracy = min_accuracy
        self._observer = observer
        # The loaded versions, newest first. Replaced by one assignment, never mutated.
        self._loaded: tuple[LoadedModel, ...] = ()
        self._state = _State()
        self._refresh_lock = threading.Lock()
        self._stop = threading.Event()
        self._poller: threading.Thread | None = None

    @property
    def loaded(self) -> tuple[LoadedModel, ...]:
        """Every loaded version, newest first (at most ``keep``). Read it once per request."""
        return self._loaded

    @property
    def current(self) -> LoadedModel | None:
        """The served (newest loaded) model, or None before one is loaded."""
        loaded = self._loaded
        return loaded[0] if loaded else None

    def get(self, version: int) -> LoadedModel | None:
        """The loaded model of ``version``, or None if it is not (or no longer) loaded."""
        return next((model for model in self._loaded if model.version == version), None)

    @property
    def file_problems(self) -> dict[int, str]:
        """Loaded versions whose files vanished or changed on disk since they were loaded.

        They keep serving from memory; this says why a restart would not bring them back.
        """
        return dict(self._state.file_problems)

    @property
    def unavailable_reason(self) -> str:
        """Why no model is served (meaningful while :attr:`current` is None)."""
        return self._state.reason

    def refresh(self) -> LoadedModel | None:
        """Load every valid version that belongs in the window; returns what is served.

        Blocking (TensorFlow work): call it from a worker thread, never from the event loop.
        """
        with self._refresh_lock:
            for version, path in find_versions(self.model_dir):  # newest first
                loaded = self._loaded
                if len(loaded) >= self.keep and version < loaded[-1].version:
                    break  # this one and all after it are older than the whole window
                if all(model.version != version for model in loaded):
                    self._try_load(version, path)
            self._check_loaded_files()
            if not self._loaded:
                self._state.reason = self._why_unavailable()
            return self.current

    def _try_load(self, version: int, path: Path) -> bool:
        prints = fingerprint(path)
        failure = self._state.failures.get(version)
        if failure is not None and failure.fingerprint == prints:
            return False  # failed before and unchanged since
        start = time.perf_counter()
        try:
            model = load_version(path, version, self.min_accuracy)
        except ModelLoadError as exc:
            self._failed(version, path, prints, str(exc), start)
            return False
        except Exception as exc:  # a TensorFlow surprise must not stop the poller
            self._failed(version, path, prints, f"{path}: {exc!r}", start, exc_info=True)
            return False
        self._state.failures.pop(version, None)
        previous = self.current
        window = sorted((*self._loaded, model), key=lambda m: m.version, reverse=True)
        self._loaded = tuple(window[: self.keep])
        self._state.loaded_prints[version] = prints
        for dropped in window[self.keep :]:
            self._state.loaded_prints.pop(dropped.version, None)
            self._state.file_problems.pop(dropped.version, None)
        if self._observer is not None:
            self._observer.load_finished(success=True, seconds=model.load_seconds)
        if self.current is model:
            log.info(
                "model version %d is now served",
                version,
                extra={
                    "event": "model_swapped",
                    "model_version": version,
                    "previous_version": previous.version if previous else None,
                    "path": str(path),
                    "load_seconds": round(model.load_seconds, 3),
                    "accuracy": model.evaluation["metrics"]["accuracy"],
                },
            )
        else:
            log.info(
                "model version %d is loaded for pinned requests",
                version,
                extra={"event": "model_loaded", "model_version": version, "path": str(path)},
            )
        for dropped in window[self.keep :]:
            # The store's last reference: the model is released once requests on it finish.
            log.info(
                "model version %d is unloaded",
                dropped.version,
                extra={"event": "model_unloaded", "model_version": dropped.version},
            )
        return True

    def _check_loaded_files(self) -> None:
        """Notice (and log once per change) a loaded version's files vanishing or changing.

        The model in memory keeps serving; but the version would not load again after a
        restart, which the operator must hear about before that restart.
        """
        problems = self._state.file_problems
        for model in self._loaded:
            event: str | None = None
            if not (model.path / "saved_model.pb").is_file():
                event, problem = "model_files_missing", "files of the loaded version are gone"
            elif fingerprint(model.path) != self._state.loaded_prints.get(model.version):
                event, problem = "model_files_changed", "files of the loaded version changed"
            known = problems.get(model.version)
            if event is None:
                if known is not None:
                    del problems[model.version]
                    log.info(
                        "files of loaded model version %d are intact again",
                        model.version,
                        extra={"event": "model_files_restored", "model_version": model.version},
                    )
                continue
            message = f"{model.path}: {problem}"
            if message == known:
                continue
            problems[model.version] = message
            log.warning(
                "%s; version %d keeps serving from memory, but would not load after a restart",
                message,
                model.version,
                extra={"event": event, "model_version": model.version, "path": str(model.path)},
            )

    def _failed(
        self,
        version: int,
        path: Path,
        prints: Fingerprint,
        error: str,
        start: float,
        *,
        exc_info: bool = False,
    ) -> None:
        self._state.failures[version] = _Failure(prints, error)
        if self._observer is not None:
            self._observer.load_finished(success=False, seconds=time.perf_counter() - start)
        log.error(
            "model version %d cannot be served: %s",
            version,
            error,
            exc_info=exc_info,
            extra={
                "event": "model_load_failed",
                "model_version": version,
                "path": str(path),
                "serving_version": self.current.version if self.current else None,
            },
        )

    def _why_unavailable(self) -> str:
        if not self.model_dir.is_dir():
            return f"model directory {self.model_dir} does not exist (yet)"
        failed = sorted(self._state.failures.items(), reverse=True)
        if failed:
            version, failure = failed[0]
            return (
                f"no loadable version in {self.model_dir}: {len(failed)} failed "
                f"(version {version}: {failure.error})"
            )
        return f"no version published in {self.model_dir} yet"

    def start_polling(self, interval_seconds: float) -> None:
        """Call :meth:`refresh` every ``interval_seconds`` in a daemon thread."""
        if self._poller is not None:
            return
        self._stop.clear()
        self._poller = threading.Thread(
            target=self._poll, args=(interval_seconds,), name="xor-model-poller", daemon=True
        )
        self._poller.start()

    def stop_polling(self, timeout: float | None = None) -> None:
        """Stop the poller, waiting for a load in progress to finish."""
        self._stop.set()
        if self._poller is not None:
            self._poller.join(timeout)
            self._poller = None

    def _poll(self, interval_seconds: float) -> None:
        while not self._stop.wait(interval_seconds):
            try:
                self.refresh()
            except Exception:  # e.g. the model dir became unreadable: keep serving, keep polling
                log.exception("scanning %s failed", self.model_dir, extra={"event": "scan_failed"})
