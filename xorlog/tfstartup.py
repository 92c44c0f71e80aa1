"""TensorFlow's C++ start-up notices, silenced by default without touching its numerics.

Even with ``TF_CPP_MIN_LOG_LEVEL=2``, ``import tensorflow`` (2.21) prints, twice::

    WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
    I0000 00:00:1796029456.034827    5420 port.cc:153] oneDNN custom operations are on. ...

Where they come from: two libraries that ``import tensorflow`` loads each carry their own copy
of TensorFlow's core and of absl: ``libtensorflow_framework.so.2`` (loaded first, by the CPU
feature guard) and ``python/profiler/internal/_pywrap_profiler_plugin.so`` (loaded later, by
``tf.profiler``'s client). While each is loaded, its static initialisers ask whether oneDNN is
on (``IsMklEnabled`` in ``tensorflow/core/util/port.cc``), which logs that notice at INFO through
the library's copy of absl. TensorFlow's own logger reads ``TF_CPP_MIN_LOG_LEVEL``; absl reads
no environment variable, and, not initialised yet, first prints its ``InitializeLog`` warning.
Hence one pair per library. Nothing can reach either copy of absl before its initialisers run
(they run inside ``dlopen``, and the plugin exports no absl symbols at all), and the one switch
that stops the notice, ``TF_ENABLE_ONEDNN_OPTS=0``, also changes the numerics.

So the cause is met as closely as it can be: while ``tensorflow`` is being imported, and only
then, the process's stderr (file descriptor 2, which the C++ code writes to) goes through
:mod:`xorlog.stderr_filter`, which applies ``TF_CPP_MIN_LOG_LEVEL`` to absl's lines exactly as
TensorFlow applies it to its own. The trade-offs, and why they do not hide real errors:

- only lines in absl's format below the level are left out: at the default 2, INFO and WARNING;
  ERROR and FATAL lines, Python tracebacks and anything else pass unchanged, and an explicit
  ``TF_CPP_MIN_LOG_LEVEL`` (0 shows everything) is honoured;
- only during the import: absl lines logged later (a model load, an op) are not touched;
- the filter is a separate process reading a pipe, so nothing waits on a full buffer, and
  if the import crashes the process (an ``abort`` on a CPU without AVX, say) the filter still
  passes on every line written before, then ends;
- it costs one small Python process (35-115 ms to start and end, measured here) next to an
  import of seconds, and nothing when TensorFlow is not imported (a bad setting, say).
"""

from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType

VARIABLE = "TF_CPP_MIN_LOG_LEVEL"
# INFO and WARNING hidden, ERROR and FATAL shown.
DEFAULT_MIN_LOG_LEVEL = 2
_FILTER_SCRIPT = Path(__file__).with_name("stderr_filter.py")
# How long the end of the import waits for the filter to pass on what is left in the pipe.
_DRAIN_SECONDS = 5.0
# Filters still forwarding for a process started during the import that holds the pipe open:
# kept referenced so they are not reported as leaked while they finish.
_still_forwarding: list[subprocess.Popen[bytes]] = []


def min_log_level(value: str) -> int:
    """``TF_CPP_MIN_LOG_LEVEL`` as TensorFlow reads it: a leading integer, anything else 0."""
    match = re.match(r"\s*([+-]?\d+)", value)
    return int(match[1]) if match else 0


def quiet_tensorflow_startup() -> int:
    """Default ``TF_CPP_MIN_LOG_LEVEL`` to 2 and make this process's first ``import tensorflow``
    apply it to absl's start-up lines too; returns the level in force.

    Call it before anything imports TensorFlow (a value set later is not read). A value the
    user set (not empty) is kept as it is.
    """
    if not os.environ.get(VARIABLE, "").strip():
        os.environ[VARIABLE] = str(DEFAULT_MIN_LOG_LEVEL)
    level = min_log_level(os.environ[VARIABLE])
    installed = any(isinstance(finder, _FilteredImport) for finder in sys.meta_path)
    if level > 0 and os.name == "posix" and "tensorflow" not in sys.modules and not installed:
        sys.meta_path.insert(0, _FilteredImport(level))
    return level


@contextlib.contextmanager
def stderr_through_filter(min_level: int) -> Iterator[None]:
    """For the duration, what this process writes to file descriptor 2 passes through
    :mod:`xorlog.stderr_filter` at ``min_level``; restored after, whatever happens inside."""
    child, original = _start_filter(min_level)
    try:
        yield
    finally:
        if child is not None and original is not None:
            _flush_stderr()
            os.dup2(original, 2)
            os.close(original)
            try:
                child.wait(timeout=_DRAIN_SECONDS)
            except subprocess.TimeoutExpired:
                _still_forwarding.append(child)


def _start_filter(min_level: int) -> tuple[subprocess.Popen[bytes] | None, int | None]:
    """The filter process reading a pipe that is now fd 2, and a copy of the original fd 2;
    (None, None) and fd 2 untouched if there is no stderr or no way to start the filter."""
    if not sys.executable:
        return None, None
    _flush_stderr()
    try:
        original = os.dup(2)
    except OSError:  # no stderr at all: nothing to filter
        return None, None
    read_end, write_end = os.pipe()
    try:
        child = subprocess.Popen(
            [sys.executable, "-I", "-S", str(_FILTER_SCRIPT), str(min_level)],
            stdin=read_end,
            stdout=original,
            stderr=original,
        )
    except OSError:
        for fd in (read_end, write_end, original):
            os.close(fd)
        return None, None
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    return child, original


def _flush_stderr() -> None:
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stderr.flush()


class _FilteredImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` as the other finders do, and has it executed with stderr filtered.
    Removes itself at that first lookup: one import, once."""

    def __init__(self, min_level: int) -> None:
        self.min_level = min_level

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _FilteredLoader(spec.loader, self.min_level)
        return spec


class _FilteredLoader(importlib.abc.Loader):
    """``inner``, with the module's code run inside :func:`stderr_through_filter`. The module
    records ``inner`` as its loader, as if this one had never been there."""

    def __init__(self, inner: importlib.abc.Loader, min_level: int) -> None:
        self.inner = inner
        self.min_level = min_level

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        with stderr_through_filter(self.min_level):
            self.inner.exec_module(module)
