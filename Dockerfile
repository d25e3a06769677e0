# syntax=docker/dockerfile:1
# One image per service, all from this file:
#   docker build --target gateway          -t assetgen/gateway:0.1.0 .
#   docker build --target orchestrator     -t assetgen/orchestrator:0.1.0 .
#   docker build --target provider-adapter -t assetgen/provider-adapter:0.1.0 .
#   docker build --target storage          -t assetgen/storage:0.1.0 .
# The services share one Python distribution, so the targets differ only in entrypoint and ports;
# the build stage, and with it every layer but the last, is shared between them.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# Same pins as the dev extra in pyproject.toml (a test keeps them equal): stubs made here match `make protos`.
ARG GRPCIO_TOOLS_VERSION=1.85.1
ARG MYPY_PROTOBUF_VERSION=5.1.0
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src

# The stub generator lives in its own venv so it never reaches the runtime image.
RUN python -m venv /opt/protoc \
 && /opt/protoc/bin/pip install --no-cache-dir \
      "grpcio-tools==${GRPCIO_TOOLS_VERSION}" "mypy-protobuf==${MYPY_PROTOBUF_VERSION}"
COPY protos/ protos/
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p gen \
 && GOOGLE_PROTOS="$(/opt/protoc/bin/python -c 'import google.api, os; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')" \
 && /opt/protoc/bin/python -m grpc_tools.protoc \
      -I protos -I "${GOOGLE_PROTOS}" \
      --python_out=gen --pyi_out=gen --grpc_python_out=gen \
      --plugin=protoc-gen-mypy_grpc=/opt/protoc/bin/protoc-gen-mypy_grpc --mypy_grpc_out=gen \
      protos/assetgen/v1/*.proto \
 && touch gen/assetgen/__init__.py gen/assetgen/v1/__init__.py gen/assetgen/py.typed

COPY pyproject.toml ./
COPY lib/ lib/
COPY services/ services/
COPY tools/ tools/
# `pip install .` installs only the runtime dependencies: no extras, so no dev or embedded tools.
RUN python -m venv /opt/assetgen \
 && /opt/assetgen/bin/pip install --no-cache-dir . \
 && /opt/assetgen/bin/python -c "import assetgen.v1.storage_pb2_grpc, assetgen_gateway, assetgen_orchestrator, assetgen_storage, assetgen_provider_adapter"


FROM ${PYTHON_IMAGE} AS runtime
# Numeric ids so Kubernetes' runAsNonRoot can verify them without reading /etc/passwd.
ARG APP_UID=10001
RUN groupadd --system --gid "${APP_UID}" assetgen \
 && useradd --system --uid "${APP_UID}" --gid assetgen --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin assetgen
COPY --from=build /opt/assetgen /opt/assetgen
# Bytecode was compiled at install time; the root filesystem is read-only in the cluster.
ENV PATH=/opt/assetgen/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
WORKDIR /tmp
USER 10001:10001


FROM runtime AS orchestrator
EXPOSE 50052
ENTRYPOINT ["assetgen-orchestrator"]

FROM runtime AS provider-adapter
EXPOSE 50053
ENTRYPOINT ["assetgen-provider-adapter"]

FROM runtime AS storage
EXPOSE 50054
ENTRYPOINT ["assetgen-storage"]

# Last, so a plain `docker build .` yields the gateway.
FROM runtime AS gateway
EXPOSE 8080 50051
ENTRYPOINT ["assetgen-gateway"]
