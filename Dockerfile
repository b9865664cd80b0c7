# One image recipe for all six services. Build from the repository root, naming the service:
#   docker build --build-arg SERVICE=storage -t atlasloop/storage:dev .
#   docker build --build-arg SERVICE=inference --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 \
#       -t atlasloop/inference:dev-cuda .
# (`make images` builds them all.) Multi-stage: stubs and wheels are built in the first stage; the
# runtime stage holds only the installed packages and runs as an unprivileged user (the chart
# mounts the root filesystem read-only with a writable /tmp). Services whose package depends on
# atlasloop-models (inference, training) get torch from TORCH_INDEX (CPU by default); the others
# get no torch at all.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG SERVICE
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
WORKDIR /src
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<storage|inference|scoring|rendering|tracking|training>"; exit 1; }
RUN pip install --no-cache-dir grpcio-tools==1.85.1
COPY constraints.txt ./
COPY protos ./protos
COPY libs/common ./libs/common
COPY libs/models ./libs/models
COPY libs/method ./libs/method
COPY services/${SERVICE} ./services/${SERVICE}
RUN find protos -name '*.proto' -print0 | xargs -0 python -m grpc_tools.protoc -I protos \
      --python_out=libs/common/src --pyi_out=libs/common/src --grpc_python_out=libs/common/src
# Our libraries as wheels first (no dependencies), so the service's resolution finds them locally.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./libs/common ./libs/models ./libs/method
RUN if grep -q '"atlasloop-models"' "services/${SERVICE}/pyproject.toml"; then \
      pip wheel --no-cache-dir --no-deps --wheel-dir /wheels --index-url "${TORCH_INDEX}" torch==2.13.0; fi \
    && pip wheel --no-cache-dir --wheel-dir /wheels --find-links /wheels -c constraints.txt "./services/${SERVICE}"

FROM ${PYTHON_IMAGE}
ARG SERVICE
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "atlasloop-${SERVICE}==0.1.0" && rm -rf /wheels \
    && ln -s "$(command -v "atlasloop-${SERVICE}")" /usr/local/bin/atlasloop-service \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin atlasloop
USER 10001:10001
# every service listens on 50051-50056 (atlasloop.common.service_map); the chart sets the port
EXPOSE 50051-50056
ENTRYPOINT ["atlasloop-service"]
