# CUDA image for the paper profile (and the demo): `make docker-build`, then
#   docker run --rm --gpus all --ipc=host -v "$PWD":/workspace aesthetic-llm reproduce PROFILE=paper
# The PyPI torch wheel in requirements.lock bundles its CUDA 13 libraries; the base image supplies the
# user-space driver shims. Host driver >= 580 (CUDA 13).
ARG BASE_IMAGE=nvidia/cuda:13.0.0-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DS_BUILD_OPS=0 \
    VENV=/opt/venv \
    HF_HOME=/root/.cache/huggingface

RUN apt-get update \
 && apt-get install -y --no-install-recommends software-properties-common ca-certificates git make curl \
 && add-apt-repository -y ppa:deadsnakes/ppa \
 && apt-get install -y --no-install-recommends python3.11 python3.11-venv python3.11-dev build-essential \
 && rm -rf /var/lib/apt/lists/*

# The lock first: editing code does not invalidate this (large) layer.
COPY requirements.lock /opt/requirements.lock
RUN python3.11 -m venv "$VENV" \
 && "$VENV/bin/pip" install --upgrade "pip>=24" \
 && "$VENV/bin/pip" install -r /opt/requirements.lock

# The project itself (the repo is normally mounted over /workspace at run time).
WORKDIR /workspace
COPY . /workspace
RUN "$VENV/bin/pip" install --no-deps -e /workspace \
 && git config --global --add safe.directory /workspace

# `make` finds the image's environment through VENV; the stamp (named as the Makefile names it) marks
# it as built from this lock, so `make reproduce` does not reinstall.
ENV PATH="/opt/venv/bin:${PATH}"
RUN touch "$VENV/.installed-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
ENTRYPOINT ["make", "VENV=/opt/venv"]
CMD ["reproduce"]
