# One image for every service: the api (default command), training and TensorBoard.
ARG PYTHON_IMAGE=python:3.11-slim

# --- build: the locked dependencies and the project, into a venv copied as a whole below ---
# Bytecode is compiled here, once: the api runs on a read-only root filesystem, so a module
# without a valid .pyc is compiled again at every start and every `run train`: `import
# tensorflow` compiles ~2,400 modules, 8-9 s instead of 3 s, and `docker compose up -d` served
# after 9-12 s instead of 4.5-5 s (as fast as on the host; `python -m bench.container_start`).
# Mode unchecked-hash: the .pyc holds a hash of its source and Python loads it without reading
# the source, so it stays valid whatever mtimes `COPY --from=build`, a registry or a
# reproducible build (SOURCE_DATE_EPOCH) give the files; a timestamp .pyc (the default) whose
# mtime no longer matches is silently recompiled at every start instead. checked-hash would
# read and hash every imported source at every start (48 MiB, ~0.1 s) to guard against edits
# that cannot happen: the sources never change after this stage (an image deriving from this
# one and editing a .py must compile it again). Nothing else writes bytecode into the venv
# (PYTHONDONTWRITEBYTECODE, pip --no-compile): every .pyc in it comes from compileall below.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
WORKDIR /src
COPY requirements.lock ./
# -f: also recompile what `venv` (ensurepip) compiled with timestamps.
RUN /opt/venv/bin/pip install --no-compile --requirement requirements.lock \
    && /opt/venv/bin/python -m compileall -q -f -j 0 --invalidation-mode unchecked-hash /opt/venv
COPY pyproject.toml README.md ./
COPY app ./app
COPY training ./training
COPY modelrepo ./modelrepo
COPY xorlog ./xorlog
# setuptools comes from the lock: no build isolation, nothing fetched unpinned. Only the
# project's files (as pip recorded them; -I: not /src's) are compiled here, so a change to it
# leaves the layer above, TensorFlow's, cached.
RUN /opt/venv/bin/pip install --no-compile --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -I -c 'import importlib.metadata as m; print(*(f.locate() for f in m.files("xor-serving") if f.suffix == ".py"), sep="\n")' > /tmp/project-sources \
    && /opt/venv/bin/python -m compileall -q -f --invalidation-mode unchecked-hash -i /tmp/project-sources

# --- runtime: no build tools, no pip cache, a non-root user ---
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="xor-serving" \
      org.opencontainers.image.description="Train, evaluate and serve the XOR DNNClassifier (TensorFlow SavedModel behind FastAPI)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

RUN groupadd --system --gid 10001 xor \
    && useradd --system --uid 10001 --gid xor --home-dir /srv --no-create-home xor
# The official slim images ship the standard library without bytecode (to save ~30 MB); the
# api would compile what it imports of it at every start. Existing current .pyc are kept.
RUN python -m compileall -q -j 0 --invalidation-mode unchecked-hash -x /site-packages/ \
        "$(python -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')"
COPY --from=build /opt/venv /opt/venv
WORKDIR /srv
COPY data ./data
# The models dir must exist and belong to the user: a new named volume mounted here takes
# this ownership on Docker.
RUN mkdir -p /srv/models/xor /srv/models/training && chown -R xor:xor /srv/models

# No bytecode written at run time: the image ships all of it (compiled above), and the api's
# root filesystem is read-only anyway.
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
