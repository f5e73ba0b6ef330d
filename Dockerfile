# syntax=docker/dockerfile:1
# The retrieval service image; with `--build-arg EXTRAS=train`, the training image the training CronJob runs.
#
#   GPU (default): docker build -t retrieval:gpu .
#   CPU:           docker build --build-arg VARIANT=cpu --build-arg BASE_IMAGE=ubuntu:22.04 -t retrieval:cpu .
#   Training:      docker build --build-arg EXTRAS=train -t retrieval:gpu-train .
#
# EXTRAS names the pyproject.toml extra installed, from its pinned list deploy/docker/requirements-<EXTRAS>.txt:
# `serve` (default) has no matplotlib and no grpcio-tools; `train` adds matplotlib for `retrieval-train`.
#
# Both stages start from the same base so the virtual environment built in the first one runs unchanged in the
# second. Ubuntu 22.04 ships Python 3.11 as `python3.11`; the GPU base adds the CUDA runtime, and
# `tensorflow[and-cuda]` / `faiss-gpu` bring cuDNN, cuBLAS and the CUDA 12 runtime as nvidia-*-cu12 wheels (pip
# resolves one set that satisfies both; docs/gpu.md lists it). Only the NVIDIA driver comes from the node
# (NVIDIA container toolkit).
#
# FAISS GPU: the official `faiss-gpu` wheel (CUDA 12) carries kernels for sm_70, 75, 80, 86, 89 and 90 and sm_90
# PTX, so it runs on V100 through A100/L4/L40 and H100/H200. Not `faiss-gpu-cu12` 1.14.1.post1: its kernels are
# sm_70 and sm_80 only, with no PTX, so it cannot search on Hopper (docs/gpu.md shows how this was checked).
ARG BASE_IMAGE=nvidia/cuda:12.5.1-runtime-ubuntu22.04

FROM ${BASE_IMAGE} AS build
ARG VARIANT=gpu
ARG EXTRAS=serve
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY deploy/docker/requirements-serve.txt deploy/docker/requirements-train.txt /tmp/
RUN if [ "$VARIANT" = "gpu" ]; then \
        pip install "tensorflow[and-cuda]==2.21.0" "faiss-gpu==1.15.1"; \
    elif [ "$VARIANT" = "cpu" ]; then \
        pip install "tensorflow==2.21.0" "faiss-cpu==1.15.1"; \
    else \
        echo "VARIANT must be gpu or cpu, got $VARIANT" >&2; exit 1; \
    fi \
    && pip install -r "/tmp/requirements-${EXTRAS}.txt"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY model ./model
COPY service ./service
# --no-deps: TensorFlow and FAISS of the chosen variant are installed above, the EXTRAS extra's from its pinned list.
RUN pip install --no-deps . && python -c "import service.cli" \
    && if [ "$EXTRAS" = "train" ]; then python -c "import model.cli, model.training.job"; fi

FROM ${BASE_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 10001 --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin retrieval
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TF_CPP_MIN_LOG_LEVEL=2 \
    MPLCONFIGDIR=/tmp/matplotlib \
    KERAS_HOME=/tmp/keras \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
USER 10001:10001
# The root filesystem is read-only in Kubernetes; /tmp is an emptyDir there.
WORKDIR /tmp
# gRPC and Prometheus /metrics.
EXPOSE 50051 9464
ENTRYPOINT ["retrieval-serve"]
CMD ["--models-dir", "/models", "--model-name", "retrieval", "--metrics-port", "9464", "--workers", "2"]
