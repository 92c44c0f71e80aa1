"""One training run as stages: data -> train -> evaluate -> export.

The command line only parses flags and turns errors into exit codes; what a run does lives
here, one function per stage, so tests drive exactly the run ``xor-train`` performs. TensorFlow
is imported only after both CSV files are validated, so bad data, or ``--if-missing`` with a
version already published (in the export dir, or with ``--publish`` in that repository),
answers without paying for it.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from training.config import TrainSettings
from training.data import Dataset, load_csv
from training.errors import ExportError, QualityGateError
from training.evaluate import evaluate
from training.versions import published_versions

if TYPE_CHECKING:
    from modelrepo.repository import Repository
    from training.export import PredictLogits, PublishedVersion
    from training.train import Trainer, TrainOutcome

log = logging.getLogger(__name__)


def run(settings: TrainSettings) -> int:
    """Train (or resume), evaluate and publish as ``settings`` say; returns the exit code.

    0 when a version was published or ``--if-missing`` found one, 128+N when signal N stopped
    the training (after a checkpoint). Everything else the user can fix raises TrainingError.
    """
    destination = None
    if settings.publish is not None:
        from training.publish import open_destination

        # First, so that --if-missing asks the repository, and a wrong endpoint or key fails
        # fast either way.
        destination = open_destination(settings.publish)
    if settings.if_missing and _already_published(settings, destination):
        return 0
    train_data, test_data = _load_data(settings)
    _make_deterministic(settings.seed)

    from training.train import locked_model_dir

    with locked_model_dir(settings.model_dir), _stop_on_signals() as stopped_by:
        trainer, outcome = _train(
            settings, train_data, should_stop=lambda: stopped_by() is not None
        )
        if (signum := stopped_by()) is not None:
            log.warning(
                "stopped at global step %d; run again to resume from its checkpoint",
                outcome.global_step,
            )
            return 128 + signum
        published = _export(settings, trainer, outcome, test_data, destination)
    if destination is not None:
        from training.publish import publish_version

        # --label then names a label of the S3 repository, the one servers follow.
        publish_version(destination, published.path, published.version, settings.label)
    elif settings.label is not None:
        from training.export import point_label

        point_label(settings.export_dir, published.version, settings.label)
    print(json.dumps({"path": str(published.path), **published.evaluation}, indent=2))
    return 0


def _already_published(settings: TrainSettings, destination: Repository | None) -> bool:
    """--if-missing: whether the repository this run publishes to (``destination``, else the
    export dir) holds a version. Either way it says so: whether this run trains is not obvious
    to the person waiting (``make run``, compose's first start)."""
    if destination is not None:
        from training.publish import newest_version

        where, newest = destination.location, newest_version(destination)
    else:
        where, newest = str(settings.export_dir), _newest_local(settings)
    if newest is None:
        log.info("training a first model (no version in %s yet)", where)
        return False
    log.info("%s already holds version %d: nothing to do (--if-missing)", where, newest)
    return True


def _newest_local(settings: TrainSettings) -> int | None:
    try:
        versions = published_versions(settings.export_dir)
    except OSError as exc:  # not a directory, not readable
        raise ExportError(
            f"{settings.export_dir}: cannot list its versions: {exc.strerror or exc}"
        ) from exc
    return versions[-1] if versions else None


def _load_data(settings: TrainSettings) -> tuple[Dataset, Dataset]:
    """Both files, validated before anything is trained."""
    train_data = load_csv(settings.train_data)
    test_data = load_csv(settings.test_data)
    log.info("train data: %s (%d rows)", train_data.path, train_data.rows)
    log.info("test data: %s (%d rows)", test_data.path, test_data.rows)
    return train_data, test_data


def _make_deterministic(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def _train(
    settings: TrainSettings, train_data: Dataset, *, should_stop: Callable[[], bool]
) -> tuple[Trainer, TrainOutcome]:
    """Restore the model dir's newest checkpoint (if any) and train the steps asked for."""
    from training.data import training_batches
    from training.train import Trainer

    trainer = Trainer(
        settings.model_dir,
        hidden_units=settings.hidden_units,
        learning_rate=settings.learning_rate,
        keep_checkpoint_max=settings.keep_checkpoint_max,
    )
    trainer.restore()
    start = trainer.global_step
    steps = settings.mode_steps
    until = start + steps if steps is not None else int(settings.max_steps or 0)
    # Reseed the shuffle per resume, so a resumed run does not replay the same batches.
    batches = training_batches(
        train_data, batch_size=settings.batch_size, seed=settings.seed + start
    )
    with _progress_bar(until - start) as progress:
        outcome = trainer.train(
            batches,
            until_step=until,
            save_checkpoints_steps=settings.save_checkpoints_steps,
            save_summary_steps=settings.save_summary_steps,
            log_step_count_steps=settings.log_step_count_steps,
            should_stop=should_stop,
            progress=progress,
        )
    if outcome.steps_run and not should_stop():
        log.info(
            "trained %d steps in %.2f s (%.0f steps/sec), global step %d",
            outcome.steps_run,
            outcome.seconds,
            outcome.steps_run / max(outcome.seconds, 1e-9),
            outcome.global_step,
        )
    return trainer, outcome


def _export(
    settings: TrainSettings,
    trainer: Trainer,
    outcome: TrainOutcome,
    test_data: Dataset,
    destination: Repository | None,
) -> PublishedVersion:
    """Publish the trained model, if its evaluation (of the SavedModel as written) passes.

    With a ``destination``, the version is numbered above its newest version too (listed now,
    after the training): the export dir may be new, or another trainer may have published, and
    the upload refuses a number that exists.
    """
    from training.export import export_saved_model

    at_least = 1
    if destination is not None:
        from training.publish import newest_version

        at_least = (newest_version(destination) or 0) + 1
    return export_saved_model(
        trainer.model,
        settings.export_dir,
        evaluate=lambda predict_logits: _evaluate(
            settings, trainer, outcome, test_data, predict_logits
        ),
        at_least=at_least,
        history=trainer.history(),
    )


def _evaluate(
    settings: TrainSettings,
    trainer: Trainer,
    outcome: TrainOutcome,
    test_data: Dataset,
    predict_logits: PredictLogits,
) -> dict[str, Any]:
    """Metrics on the test data, logged and written for TensorBoard, then the quality gate.

    Returns the evaluation document; raises QualityGateError (nothing is published) when the
    accuracy is below ``--min-accuracy``.
    """
    from training.train import write_scalars

    metrics = evaluate(predict_logits, test_data, global_step=outcome.global_step)
    log.info(
        "Saving dict for global step %d: %s",
        outcome.global_step,
        ", ".join(f"{name} = {value:.6g}" for name, value in metrics.items()),
    )
    scalars = {k: float(v) for k, v in metrics.items() if k != "global_step"}
    write_scalars(settings.model_dir / "eval", outcome.global_step, scalars)
    if metrics["accuracy"] < settings.min_accuracy:
        raise QualityGateError(
            f"test accuracy {metrics['accuracy']:.4f} is below --min-accuracy "
            f"{settings.min_accuracy}: nothing published "
            f"(checkpoints kept in {settings.model_dir})"
        )
    return {
        "evaluated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dataset": {
            "path": str(test_data.path),
            "rows": test_data.rows,
            "sha256": test_data.sha256,
        },
        "metrics": metrics,
        "training": _describe_training(settings, trainer, outcome),
    }


def _describe_training(
    settings: TrainSettings, trainer: Trainer, outcome: TrainOutcome
) -> dict[str, Any]:
    """The model and optimizer as built, and how this run trained them."""
    import tensorflow as tf

    from training.model import describe_model

    built = describe_model(trainer.model, trainer.optimizer)
    return {
        "hidden_units": built.hidden_units,
        "steps": outcome.steps_run,
        "batch_size": settings.batch_size,
        # The rate this run applied: the optimizer keeps it as a float32 variable, which would
        # publish 0.05 as 0.0500000007...
        "learning_rate": trainer.learning_rate,
        "optimizer": built.optimizer,
        "seed": settings.seed,
        "tensorflow": tf.__version__,
    }


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[Callable[[], int | None]]:
    """Turn SIGINT/SIGTERM into a request to stop after the current steps (and checkpoint)."""
    received: list[int] = []
    stop = threading.Event()

    def handle(signum: int, _frame: object) -> None:
        if stop.is_set():  # a second signal: give up at once
            raise KeyboardInterrupt
        received.append(signum)
        stop.set()
        log.warning("%s received: stopping after the current steps", signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield lambda: received[0] if received else None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None]]:
    """A tqdm bar on an interactive stderr (log lines print above it); nothing otherwise."""
    if not sys.stderr.isatty() or total <= 0:
        yield lambda steps: None
        return
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    with tqdm(total=total, unit="step", file=sys.stderr) as bar, logging_redirect_tqdm():

        def advance(steps: int) -> None:
            bar.update(steps)

        yield advance
