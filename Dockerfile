# CUDA image for the paper profile (and the demo): `make docker-build`, then
#   docker run --rm --gpus all --ipc=host -v "$PWD":/workspace aesthetic-llm reproduce PROFILE=paper
# The PyPI torch wheel in requirements.lock bundles its CUDA 13 libraries; the base image supplies the
# user-space driver shims. Host driver >= 580 (CUDA 13).
#
# Python 3.11: on an Ubuntu base (the default CUDA one) from the deadsnakes PPA; on any other base (e.g. the
# Debian bookworm CPU base `make docker-base` makes for `make docker-test` where no registry is reachable)
# from that base's own apt.
#
# Hosts that reach PyPI only through their own CA bundle (a TLS-inspecting proxy) or package index pass them as
# BUILD SECRETS, which docker/build_image.sh does from the host's pip settings:
#   --secret id=pip_cert,src=<CA bundle>  --secret id=pip_conf,src=<pip.conf>
# They are mounted (at /run/secrets/<id>) into the pip steps only and never land in a layer or in ENV;
# without them pip uses PyPI and its own CA store. (`RUN --mount` needs BuildKit: Docker >= 23, or buildah.)
ARG BASE_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DS_BUILD_OPS=0 \
    VENV=/opt/venv \
    HF_HOME=/root/.cache/huggingface

RUN . /etc/os-release \
 && apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates git make curl \
 && if [ "$ID" = ubuntu ]; then \
      apt-get install -y --no-install-recommends software-properties-common \
      && add-apt-repository -y ppa:deadsnakes/ppa; \
    elif ! apt-cache show python3.11-venv >/dev/null 2>&1; then \
      echo "error: base image $PRETTY_NAME has no python3.11 in its apt, and the deadsnakes PPA is for Ubuntu only" >&2; \
      exit 1; \
    fi \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*

# The lock first: editing code does not invalidate this (large) layer.
COPY requirements.lock /opt/requirements.lock
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=pip_conf \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi \
 && python3.11 -m venv "$VENV" \
 && "$VENV/bin/pip" install --upgrade "pip>=24" \
 && "$VENV/bin/pip" install -r /opt/requirements.lock

# The project itself (the repo is normally mounted over /workspace at run time).
WORKDIR /workspace
COPY . /workspace
RUN --mount=type=secret,id=pip_cert --mount=type=secret,id=pip_conf \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi \
 && if [ -s /run/secrets/pip_conf ]; then export PIP_CONFIG_FILE=/run/secrets/pip_conf; fi \
 && "$VENV/bin/pip" install --no-deps -e /workspace \
 && git config --global --add safe.directory /workspace

# `make` finds the image's environment through VENV; the stamp (named as the Makefile names it) marks
# it as built from this lock, so `make reproduce` does not reinstall.
ENV PATH="/opt/venv/bin:${PATH}"
RUN touch "$VENV/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
ENTRYPOINT ["make", "VENV=/opt/venv"]
CMD ["reproduce"]
