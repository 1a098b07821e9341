# graceful on Linux: the wheel built from this checkout, installed into a virtualenv in a slim
# Python image, serving the app in /app as a non-root user.
#   docker build -t graceful:0.1.0 .
#   docker run --rm -p 8080:8080 graceful:0.1.0              # the demo app
#   docker run --rm -p 8080:8080 -v "$PWD:/app:ro" graceful:0.1.0 app:create_app
#
# `docker stop` sends STOPSIGNAL (SIGTERM) to PID 1, waits its timeout (10 s unless
# `docker stop -t`, `docker run --stop-timeout` or compose's `stop_grace_period` says
# otherwise), then SIGKILLs. The entrypoint is in exec form, so graceful is PID 1 and gets the
# signal itself (a shell form would leave it to /bin/sh, which does not forward it). The
# defaults below keep graceful's whole stop at 9 s; raise GRACEFUL_DRAIN_TIMEOUT and the stop
# timeout together (Kubernetes: terminationGracePeriodSeconds, 30 s by default).
ARG PYTHON_VERSION=3.12

FROM python:${PYTHON_VERSION}-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE CHANGELOG.md MANIFEST.in ./
COPY graceful ./graceful
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:${PYTHON_VERSION}-slim
ENV VIRTUAL_ENV=/opt/graceful PATH=/opt/graceful/bin:$PATH
COPY --from=build /wheels /tmp/wheels
# The uvloop extra: --loop auto takes it. The virtualenv is root's, so the app cannot change it.
RUN python -m venv "$VIRTUAL_ENV" \
    && pip install --no-cache-dir "$(echo /tmp/wheels/aiohttp_graceful-*.whl)[uvloop]" \
    && rm -rf /tmp/wheels \
    && groupadd --gid 10001 graceful \
    && useradd --uid 10001 --gid 10001 --create-home graceful \
    && mkdir /data && chown graceful:graceful /data
USER 10001:10001
WORKDIR /app

# Stop budget: drain 5 s + cancel grace 1 s + hooks 2 x 1 s + checkpoint 1 s = 9 s, under
# Docker's 10 s. A checkpoint (GRACEFUL_CHECKPOINT) belongs in /data, on a volume.
ENV GRACEFUL_HOST=0.0.0.0 \
    GRACEFUL_PORT=8080 \
    GRACEFUL_DRAIN_TIMEOUT=5 \
    GRACEFUL_CANCEL_GRACE=1 \
    GRACEFUL_HOOK_TIMEOUT=1 \
    GRACEFUL_CHECKPOINT_TIMEOUT=1 \
    GRACEFUL_LOG_FORMAT=json \
    PYTHONUNBUFFERED=1
EXPOSE 8080
STOPSIGNAL SIGTERM

# The slim image has no curl: Python asks. /readyz is 503 once the stop has begun.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]

ENTRYPOINT ["graceful", "serve"]
CMD ["graceful.demo:factory"]
