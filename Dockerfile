# One image for every service: the api (default command), training and TensorBoard.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the locked dependencies and the project, into a venv copied as a whole below ---
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
RUN /opt/venv/bin/pip install --requirement requirements.lock
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
# setuptools comes from the lock: no build isolation, nothing fetched unpinned.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# --- runtime: no build tools, no pip cache, a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="xor-serving" \
      org.opencontainers.image.description="Train, evaluate and serve the XOR DNNClassifier (TensorFlow SavedModel behind FastAPI)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 xor \
    && useradd --system --uid 10001 --gid xor --home-dir /srv --no-create-home xor
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY data ./data
# The models dir must exist and belong to the user: a new named volume mounted here takes
# this ownership on Docker.
RUN mkdir -p /srv/models/xor /srv/models/training && chown -R xor:xor /srv/models

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    XOR_HOST=0.0.0.0 \
    XOR_PORT=8000 \
    XOR_MODEL_DIR=/srv/models/xor \
    XOR_TRAIN_MODEL_DIR=/srv/models/training \
    XOR_TRAIN_EXPORT_DIR=/srv/models/xor \
    XOR_TRAIN_TRAIN_DATA=/srv/data/xor_train.csv \
    XOR_TRAIN_TEST_DATA=/srv/data/xor_test.csv

USER 10001:10001
EXPOSE 8000
# Python's urllib, not curl: the official slim image has no curl.
# Shell form so ${XOR_PORT} expands; exec form with spaced arguments gets split by podman.
# hadolint ignore=DL3025
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('XOR_PORT', '8000'), timeout=2)" || exit 1
CMD ["python", "-m", "app"]
