# One image recipe for all six services and the web page. Build from the repository root, naming it:
#   docker build --build-arg SERVICE=storage -t atlasloop/storage:dev .
#   docker build --build-arg SERVICE=web -t atlasloop/web:dev .
#   docker build --build-arg SERVICE=inference --build-arg TORCH_VARIANT=cuda -t atlasloop/inference:dev-cuda .
# (`make images` builds them all, and the CUDA variants of inference and training.) Multi-stage:
# stubs and wheels are built in the first stage; the runtime stage holds only the installed
# packages and runs as an unprivileged user (the chart mounts the root filesystem read-only with a
# writable /tmp). Services whose package depends on atlasloop-models (inference, training) get
# torch: TORCH_VARIANT=cpu takes the CPU build from PyTorch's CPU index; TORCH_VARIANT=cuda takes
# the build PyPI serves for Linux x86_64, which is the CUDA one, with NVIDIA's runtime libraries as
# its dependencies (PyTorch's own cuXYZ indexes carry only some versions; PyPI carries every one).
# The others get no torch at all.

ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ARG SERVICE
ARG TORCH_VARIANT=cpu
ARG TORCH_VERSION=2.13.0
WORKDIR /src
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<storage|inference|scoring|rendering|tracking|training|web>"; exit 1; }
RUN case "${TORCH_VARIANT}" in cpu|cuda) ;; *) echo "TORCH_VARIANT is cpu or cuda, not ${TORCH_VARIANT}"; exit 1;; esac
RUN pip install --no-cache-dir grpcio-tools==1.85.1
COPY constraints.txt ./
COPY protos ./protos
COPY libs/common ./libs/common
COPY libs/models ./libs/models
COPY libs/method ./libs/method
COPY libs/client ./libs/client
# the package to install: a service (services/) or the web page (apps/web)
COPY services ./services
COPY apps ./apps
RUN if [ -d "services/${SERVICE}" ]; then ln -s "services/${SERVICE}" package; \
    elif [ -d "apps/${SERVICE}" ]; then ln -s "apps/${SERVICE}" package; \
    else echo "no service or app named ${SERVICE}"; exit 1; fi
RUN find protos -name '*.proto' -print0 | xargs -0 python -m grpc_tools.protoc -I protos \
      --python_out=libs/common/src --pyi_out=libs/common/src --grpc_python_out=libs/common/src
# Our libraries as wheels first (no dependencies), so the service's resolution finds them locally.
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels ./libs/common ./libs/models ./libs/method ./libs/client
# torch's wheel first, from the variant's index; the service's resolution then takes it from
# /wheels and its dependencies (for cuda, NVIDIA's runtime libraries) from PyPI
RUN if grep -q '"atlasloop-models"' package/pyproject.toml; then \
      if [ "${TORCH_VARIANT}" = cuda ]; then index=https://pypi.org/simple; else index=https://download.pytorch.org/whl/cpu; fi; \
      pip wheel --no-cache-dir --no-deps --wheel-dir /wheels --index-url "${index}" "torch==${TORCH_VERSION}"; fi \
    && pip wheel --no-cache-dir --wheel-dir /wheels --find-links /wheels -c constraints.txt ./package/
# inference serves imported nnU-Net members: nnunetv2 and its network package without their
# dependency lists (requirements-nnunet.txt says why); what they import came with atlasloop-models[nnunet]
COPY requirements-nnunet.txt ./
RUN if [ "${SERVICE}" = inference ]; then \
      pip wheel --no-cache-dir --no-deps --wheel-dir /wheels/no-deps -c constraints.txt -r requirements-nnunet.txt; fi

FROM ${PYTHON_IMAGE}
ARG SERVICE
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-index --find-links /wheels "atlasloop-${SERVICE}==0.1.0" \
    && if [ -d /wheels/no-deps ]; then pip install --no-cache-dir --no-index --no-deps /wheels/no-deps/*.whl; fi \
    && rm -rf /wheels \
    && ln -s "$(command -v "atlasloop-${SERVICE}")" /usr/local/bin/atlasloop-service \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin atlasloop
USER 10001:10001
# every service listens on 50051-50056 (atlasloop.common.service_map), the page on 8790; the chart sets the port
EXPOSE 50051-50056 8790
ENTRYPOINT ["atlasloop-service"]
