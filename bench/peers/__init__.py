"""``make bench-peers``: other model servers serving the same SavedModel, loaded against the
matching API of this service (KServe V1 against ``/v1``, MLServer V2 against ``/v2``, BentoML
and LitServe against ``/predict``). Not part of ``make test``.

This module holds only what both sides read: the pinned versions and, per peer, which API of
ours it is compared with. It imports nothing outside the standard library, because the peer
server modules beside it run in the peers' own venvs. The driver is :mod:`bench.peers.driver`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Peer:
    """One peer: its pinned package, the API of ours it is loaded against (a key of
    ``bench.run.ENDPOINTS``: the peer answers the same path and request body), and the path
    that answers 200 once it has loaded the model."""

    name: str
    requirement: str
    api: str
    endpoint: str
    ready_path: str
    # The server module beside this file (``bench.peers.<name>_server``), run with the
    # repository on PYTHONPATH; the driver builds its command line.
    module: str


# Every peer's version, pinned here and nowhere else (each venv also gets tensorflow-cpu as
# pinned in requirements.lock).
PEERS = (
    Peer(
        "kserve", "kserve==0.21.0", "KServe V1", "v1", "/v1/models/xor", "bench.peers.kserve_server"
    ),
    Peer(
        "mlserver",
        "mlserver==1.7.1",
        "MLServer V2",
        "v2",
        "/v2/models/xor/ready",
        "bench.peers.mlserver_server",
    ),
    Peer(
        "bentoml", "bentoml==1.4.40", "BentoML", "predict", "/readyz", "bench.peers.bentoml_server"
    ),
    Peer(
        "litserve",
        "litserve==0.2.19",
        "LitServe",
        "predict",
        "/health",
        "bench.peers.litserve_server",
    ),
)

# The environment variable the peer server modules read the SavedModel's directory from.
MODEL_DIR_VARIABLE = "XOR_PEER_MODEL_DIR"
# The model name in the peers' URLs, as in ours.
MODEL_NAME = "xor"
