"""``python -m training`` / ``xor-train``: train, evaluate and publish, as the tutorial did.

Exit codes: 0 published (or nothing to do with --if-missing), 1 failure, 2 bad settings, data
or model dir, 3 below --min-accuracy (nothing published), 128+N stopped by signal N
(a checkpoint was saved first; run again to resume).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from training.config import TrainSettings, parse_settings
from training.data import load_csv
from training.errors import ConfigError, QualityGateError, TrainingError
from training.versions import published_versions

log = logging.getLogger("training")


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # TensorFlow's own INFO chatter (absl sharding notes, "Assets written to") only on DEBUG.
    quiet = logging.DEBUG if level == "DEBUG" else logging.WARNING
    for name in ("absl", "tensorflow"):
        logging.getLogger(name).setLevel(quiet)


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


def run(settings: TrainSettings) -> int:
    """The whole pipeline; returns the process exit code."""
    if settings.if_missing and (versions := published_versions(settings.export_dir)):
        log.info(
            "%s already holds version %d: nothing to do (--if-missing)",
            settings.export_dir,
            versions[-1],
        )
        return 0

    # Validate both files before anything is trained.
    train_data = load_csv(settings.train_data)
    test_data = load_csv(settings.test_data)
    log.info("train data: %s (%d rows)", train_data.path, train_data.rows)
    log.info("test data: %s (%d rows)", test_data.path, test_data.rows)

    import keras
    import tensorflow as tf

    from training.data import training_batches
    from training.evaluate import evaluate
    from training.export import PredictLogits, export_saved_model
    from training.train import Trainer, locked_model_dir, write_scalars

    keras.utils.set_random_seed(settings.seed)
    tf.config.experimental.enable_op_determinism()

    with locked_model_dir(settings.model_dir), _stop_on_signals() as stopped_by:
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
                should_stop=lambda: stopped_by() is not None,
                progress=progress,
            )
        if (signum := stopped_by()) is not None:
            log.warning(
                "stopped at global step %d; run again to resume from its checkpoint",
                outcome.global_step,
            )
            return 128 + signum
        if outcome.steps_run:
            log.info(
                "trained %d steps in %.2f s (%.0f steps/sec), global step %d",
                outcome.steps_run,
                outcome.seconds,
                outcome.steps_run / max(outcome.seconds, 1e-9),
                outcome.global_step,
            )

        def evaluate_export(predict_logits: PredictLogits) -> dict[str, Any]:
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
                "training": {
                    "hidden_units": settings.hidden_units,
                    "steps": outcome.steps_run,
                    "batch_size": settings.batch_size,
                    "learning_rate": settings.learning_rate,
                    "optimizer": "Adagrad",
                    "seed": settings.seed,
                    "tensorflow": tf.__version__,
                },
            }

        published = export_saved_model(trainer.model, settings.export_dir, evaluate=evaluate_export)
    print(json.dumps({"path": str(published.path), **published.evaluation}, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        settings = parse_settings(sys.argv[1:] if argv is None else argv)
    except ConfigError as exc:
        print(f"xor-train: error: {exc}", file=sys.stderr)
        return exc.exit_code
    _configure_logging(settings.log_level)
    try:
        return run(settings)
    except TrainingError as exc:
        log.error("%s", exc)
        return exc.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
