"""The serving signature the contract names, and the check that a SavedModel has it.

``serving_default`` takes ``inputs`` float32 [None, 2] and returns the Estimator binary head's
outputs (ARCHITECTURE.md). A version whose signature differs is refused before it serves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from app.errors import ModelLoadError
from app.lifecycle.files import read_regular_file

SIGNATURE_KEY = "serving_default"
# Protobuf cannot parse a larger message, so a larger saved_model.pb is refused unread.
MAX_SAVED_MODEL_BYTES = 2**31 - 1
INPUT_NAME = "inputs"
# Output name -> (dtype, static shape) of the Estimator binary classification head.
EXPECTED_OUTPUTS: dict[str, tuple[str, tuple[int | None, ...]]] = {
    "logits": ("float32", (None, 1)),
    "logistic": ("float32", (None, 1)),
    "probabilities": ("float32", (None, 2)),
    "class_ids": ("int64", (None, 1)),
    "classes": ("string", (None, 1)),
}


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


def read_signature_defs(path: Path) -> dict[str, meta_graph_pb2.SignatureDef]:
    """The ``serve`` MetaGraph's SignatureDefs in ``path/saved_model.pb``, by key.

    Kept with the loaded model (its files may change or vanish later) for the protocols that
    describe a model by its SignatureDefs (TF Serving's metadata).
    """
    saved_model = saved_model_pb2.SavedModel()
    data = read_regular_file(path / "saved_model.pb", MAX_SAVED_MODEL_BYTES)
    try:
        saved_model.ParseFromString(data)
    except Exception as exc:  # protobuf's DecodeError
        raise ModelLoadError(f"{path}: saved_model.pb is unreadable: {exc}") from exc
    graphs = [g for g in saved_model.meta_graphs if "serve" in g.meta_info_def.tags]
    if not graphs:
        raise ModelLoadError(f"{path}: saved_model.pb has no MetaGraph tagged 'serve'")
    return dict(graphs[0].signature_def)
