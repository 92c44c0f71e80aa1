"""The training loop the Estimator used to run for us: resume, shuffle, step, checkpoint, log.

A model dir holds ``model.ckpt-<step>`` checkpoints (the newest ``keep_checkpoint_max``), the
TensorBoard event files, ``model_config.json`` (the architecture the checkpoints belong to),
``history.jsonl`` (the training curve, below) and a lock file so two runs cannot write it at
once.

``history.jsonl`` holds one line ``{"step", "loss", "accuracy"}`` per summary (the values
TensorBoard gets) and one for the last steps of a run, so its last step is the global step the
run ended at. A restore trims it to the restored checkpoint's step: the curve is that of the
steps the model was trained through, and a resumed run continues it. Beyond
``MAX_HISTORY_LINES`` it is thinned to every other point, so a run of any length keeps it small.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf

from training.errors import ModelDirError, TrainingError
from training.model import build_model, build_optimizer

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "model.ckpt"
ARCHITECTURE_FILE = "model_config.json"
LOCK_FILE = ".lock"
HISTORY_FILE = "history.jsonl"
MAX_HISTORY_LINES = 4000
# Steps per call into the compiled loop: bounds how late logs, progress and a stop request are.
MAX_STEPS_PER_CALL = 50


@dataclass(frozen=True)
class TrainOutcome:
    start_step: int
    global_step: int
    seconds: float
    last_loss: float | None
    interrupted: bool

    @property
    def steps_run(self) -> int:
        return self.global_step - self.start_step


@dataclass
class _SummaryWindow:
    """Training loss (per step, summed over the batch) and accuracy since the last summary."""

    loss_sum: float = 0.0
    correct: float = 0.0
    seen: float = 0.0
    steps: int = 0

    def add(self, loss_sum: float, correct: float, seen: float, steps: int) -> None:
        self.loss_sum += loss_sum
        self.correct += correct
        self.seen += seen
        self.steps += steps

    @property
    def mean_loss(self) -> float:
        return self.loss_sum / self.steps

    @property
    def accuracy(self) -> float:
        return self.correct / self.seen


@dataclass(frozen=True)
class HistoryPoint:
    """The training curve at ``step``: the mean loss per step (summed over the batch) and the
    accuracy on the training batches, over the steps since the previous point."""

    step: int
    loss: float
    accuracy: float

    def to_json(self) -> dict[str, float | int]:
        # Six significant digits: a curve, not a checkpoint.
        return {"step": self.step, "loss": _round(self.loss), "accuracy": _round(self.accuracy)}


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def read_history(path: Path) -> list[HistoryPoint]:
    """The points of a ``history.jsonl``, steps strictly increasing; a line that is not a point
    (the partial last line of a killed run) is skipped. No file: no points."""
    points: list[HistoryPoint] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return points
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("%s: unreadable (%s); the training curve starts again", path, exc)
        return points
    for line in lines:
        try:
            record = json.loads(line)
            point = HistoryPoint(
                int(record["step"]), float(record["loss"]), float(record["accuracy"])
            )
        except (ValueError, KeyError, TypeError):
            continue
        if not points or point.step > points[-1].step:
            points.append(point)
    return points


def _write_history(path: Path, points: Sequence[HistoryPoint]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        for point in points:
            handle.write(json.dumps(point.to_json()) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def thinned(points: Sequence[HistoryPoint]) -> list[HistoryPoint]:
    """Every other point, counted back from the last (which stays)."""
    return list(points[::-1][::2][::-1])


@contextlib.contextmanager
def locked_model_dir(model_dir: Path) -> Iterator[None]:
    """Create ``model_dir`` and hold an exclusive lock on it; a second run fails fast."""
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(model_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise ModelDirError(f"{model_dir}: cannot use as model dir: {exc.strerror}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            raise ModelDirError(f"{model_dir}: another training run is using it") from exc
        yield
    finally:
        os.close(fd)


def _write_json_atomically(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_scalars(directory: Path, step: int, scalars: dict[str, float]) -> None:
    """Write one TensorBoard event per scalar at ``step`` (e.g. the evaluation in ``eval/``)."""
    writer = tf.summary.create_file_writer(str(directory))
    with writer.as_default():
        for name, value in scalars.items():
            tf.summary.scalar(name, value, step=step)
    writer.close()


class Trainer:
    """Owns the model, its optimizer and the checkpoints of one model dir."""

    def __init__(
        self,
        model_dir: Path,
        *,
        hidden_units: Sequence[int],
        learning_rate: float,
        keep_checkpoint_max: int = 5,
    ) -> None:
        self.model_dir = model_dir
        self.hidden_units = list(hidden_units)
        self.learning_rate = learning_rate
        self.model = build_model(self.hidden_units)
        self.optimizer = build_optimizer(learning_rate)
        # Build the slots now, so a restore fills every variable at once (nothing deferred).
        self.optimizer.build(self.model.trainable_variables)
        self.checkpoint = tf.train.Checkpoint(model=self.model, optimizer=self.optimizer)
        self.manager = tf.train.CheckpointManager(
            self.checkpoint,
            str(model_dir),
            max_to_keep=keep_checkpoint_max,
            checkpoint_name=CHECKPOINT_NAME,
        )
        self._run_steps = self._compile_loop()
        self.history_path = model_dir / HISTORY_FILE
        self._history_lines = 0

    @property
    def global_step(self) -> int:
        return int(self.optimizer.iterations.numpy())

    def _check_architecture(self) -> None:
        path = self.model_dir / ARCHITECTURE_FILE
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))["hidden_units"]
        except FileNotFoundError:
            return
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelDirError(f"{path}: unreadable ({exc}); remove the model dir") from exc
        if recorded != self.hidden_units:
            theirs = ",".join(map(str, recorded))
            ours = ",".join(map(str, self.hidden_units))
            raise ModelDirError(
                f"{self.model_dir} holds a model with --hidden-units {theirs}, not {ours}: "
                "use another --model-dir, or remove this one to start over"
            )

    def restore(self) -> str | None:
        """Restore the newest readable checkpoint; returns its path, or None for a fresh start."""
        self._check_architecture()
        candidates = list(reversed(self.manager.checkpoints))
        failures: list[str] = []
        path: str
        for path in candidates:
            try:
                self.checkpoint.restore(path).assert_consumed()
            except Exception as exc:  # TF reports damaged files as IndexError, DataLossError, ...
                reason = (
                    str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                )
                log.warning("cannot restore %s (%s); trying an older checkpoint", path, reason)
                failures.append(f"{path}: {reason}")
                continue
            log.info("Restoring parameters from %s", path)
            # The optimizer checkpoints its learning rate; the flag of this run wins, as it did
            # for the Estimator (whose rate was a graph constant).
            self.optimizer.learning_rate = self.learning_rate
            self._trim_history()
            return path
        if failures:
            raise ModelDirError(
                f"{self.model_dir}: no checkpoint could be restored "
                f"({'; '.join(failures)}); use another --model-dir, or remove this one"
            )
        _write_json_atomically(
            self.model_dir / ARCHITECTURE_FILE, {"hidden_units": self.hidden_units}
        )
        self._trim_history()
        return None

    def history(self) -> list[HistoryPoint]:
        """The training curve of the model as it is now (``history.jsonl``)."""
        return read_history(self.history_path)

    def _trim_history(self) -> None:
        """Keep the points of the steps the restored model was trained through: a run killed
        after a summary but before its checkpoint, or a fallback to an older checkpoint, leaves
        points beyond it."""
        points = self.history()
        kept = [point for point in points if point.step <= self.global_step]
        if len(kept) < len(points):
            log.info(
                "%s: %d points after step %d dropped (not in the restored checkpoint)",
                self.history_path,
                len(points) - len(kept),
                self.global_step,
            )
        if self.history_path.exists():
            # Rewritten whole: a killed run may have left half a line, which an append would
            # run into.
            _write_history(self.history_path, kept)
        self._history_lines = len(kept)

    def _record(self, point: HistoryPoint) -> None:
        """Append ``point`` to ``history.jsonl``, thinning it when it grew too long."""
        with self.history_path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(point.to_json()) + "\n")
        self._history_lines += 1
        if self._history_lines > MAX_HISTORY_LINES:
            points = thinned(self.history())
            _write_history(self.history_path, points)
            self._history_lines = len(points)

    def save(self) -> str:
        try:
            path: str = self.manager.save(checkpoint_number=self.global_step)
        except (tf.errors.OpError, OSError) as exc:
            # E.g. a full disk. The checkpoint state still names the previous checkpoint, so
            # the next run resumes from there; TensorFlow's half-written temp dir goes.
            prefix = self.model_dir / f"{CHECKPOINT_NAME}-{self.global_step}"
            shutil.rmtree(f"{prefix}_temp", ignore_errors=True)
            reason = getattr(exc, "message", None) or str(exc)
            raise TrainingError(
                f"{self.model_dir}: cannot write the checkpoint of step {self.global_step}: "
                f"{reason.rsplit(';', 1)[-1].strip() or reason}"
            ) from exc
        log.info("Saving checkpoints for %d into %s", self.global_step, path)
        return path

    def _compile_loop(self) -> Callable[[Iterator[Any], tf.Tensor], tuple[tf.Tensor, ...]]:
        model, optimizer = self.model, self.optimizer

        @tf.function  # type: ignore[untyped-decorator]
        def run_steps(batches: Iterator[Any], count: tf.Tensor) -> tuple[tf.Tensor, ...]:
            last_loss = tf.constant(0.0)
            loss_sum = tf.constant(0.0)
            correct = tf.constant(0.0)
            seen = tf.constant(0.0)
            for _ in tf.range(count):
                features, labels = next(batches)
                with tf.GradientTape() as tape:
                    logits = model(features, training=True)
                    # Summed over the batch, as the Estimator's binary head reduced its loss.
                    last_loss = tf.reduce_sum(
                        tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
                    )
                variables = model.trainable_variables
                gradients = tape.gradient(last_loss, variables)
                optimizer.apply_gradients(zip(gradients, variables, strict=True))
                hits = tf.cast(tf.equal(tf.cast(logits > 0, tf.float32), labels), tf.float32)
                loss_sum += last_loss
                correct += tf.reduce_sum(hits)
                seen += tf.cast(tf.size(labels), tf.float32)
            return last_loss, loss_sum, correct, seen

        return run_steps  # type: ignore[no-any-return]

    def train(
        self,
        batches: tf.data.Dataset,
        *,
        until_step: int,
        save_checkpoints_steps: int,
        save_summary_steps: int,
        log_step_count_steps: int,
        should_stop: Callable[[], bool] = lambda: False,
        progress: Callable[[int], None] = lambda steps: None,
    ) -> TrainOutcome:
        """Train until the global step reaches ``until_step`` (or ``should_stop()``)."""
        start_step = step = self.global_step
        started = time.perf_counter()
        if step >= until_step:
            log.info("Skipping training: global step %d already reached %d", step, until_step)
            return TrainOutcome(step, step, 0.0, None, interrupted=False)

        writer = tf.summary.create_file_writer(str(self.model_dir))
        iterator = iter(batches)
        boundaries = (save_checkpoints_steps, save_summary_steps, log_step_count_steps)
        window = _SummaryWindow()
        last_log = (step, started)
        last_loss: float | None = None
        saved_step = -1
        interrupted = False
        try:
            while step < until_step:
                if should_stop():
                    interrupted = True
                    break
                next_boundary = min(((step // every) + 1) * every for every in boundaries)
                count = min(next_boundary, until_step, step + MAX_STEPS_PER_CALL) - step
                last, loss_sum, correct, seen = (
                    float(value) for value in self._run_steps(iterator, tf.constant(count))
                )
                if not math.isfinite(loss_sum):
                    raise TrainingError(
                        f"model diverged with loss = {loss_sum} between steps {step} and "
                        f"{step + count}; the last checkpoint is from step {max(saved_step, 0)}: "
                        "try a lower --learning-rate"
                    )
                step += count
                last_loss = last
                progress(count)
                window.add(loss_sum, correct, seen, count)

                if step % log_step_count_steps == 0:
                    now = time.perf_counter()
                    rate = (step - last_log[0]) / max(now - last_log[1], 1e-9)
                    log.info("loss = %.6g, step = %d (%.3f sec)", last, step, now - last_log[1])
                    log.info("global_step/sec: %.1f", rate)
                    last_log = (step, now)
                if step % save_summary_steps == 0:
                    with writer.as_default():
                        tf.summary.scalar("loss", window.mean_loss, step=step)
                        tf.summary.scalar("accuracy", window.accuracy, step=step)
                    self._record(HistoryPoint(step, window.mean_loss, window.accuracy))
                    window = _SummaryWindow()
                if step % save_checkpoints_steps == 0:
                    self.save()
                    saved_step = step
            if window.steps:
                # The run's last steps, so that the curve ends at the global step it reached.
                self._record(HistoryPoint(step, window.mean_loss, window.accuracy))
            if step != saved_step and step > start_step:
                self.save()
        finally:
            writer.close()
        seconds = time.perf_counter() - started
        if last_loss is not None:
            log.info("Loss for final step: %.6g.", last_loss)
        return TrainOutcome(start_step, step, seconds, last_loss, interrupted)
