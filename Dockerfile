# syntax=docker/dockerfile:1.7
# One image for every agentbus process (web, orchestrator, worker, chroma, migrate): the
# command chooses the role. Build it with the offline copy of the embedding model as a
# named context, so no process ever downloads it:
#   docker build --build-context models=../shared/models -t agentbus .
# (docker compose build does the same: see docker-compose.yml's additional_contexts.)

# --- build: a virtualenv with the pinned requirements; compilers stay in this stage -----
FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /venv
COPY requirements.txt /tmp/requirements.txt
RUN /venv/bin/pip install -r /tmp/requirements.txt

# --- runtime: the venv, the code, the model; a non-root user ---------------------------
FROM python:3.11-slim-bookworm AS runtime
RUN groupadd --system --gid 10001 agentbus \
 && useradd --system --uid 10001 --gid agentbus --home-dir /home/agentbus --create-home agentbus \
 && mkdir -p /data && chown agentbus:agentbus /data
COPY --from=build /venv /venv
WORKDIR /app
COPY --chown=agentbus:agentbus . /app
# Chroma's DefaultEmbeddingFunction (all-MiniLM-L6-v2, ONNX) looks in ~/.cache/chroma;
# baked in here from the offline copy, read-only for the process. `models` is a named
# build context (--build-context), not a stage, which hadolint cannot know.
# hadolint ignore=DL3022
COPY --from=models all-MiniLM-L6-v2/onnx /home/agentbus/.cache/chroma/onnx_models/all-MiniLM-L6-v2/onnx
ENV PATH=/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/agentbus \
    AGENTBUS_VAR_DIR=/data \
    STATIC_ROOT=/app/staticfiles \
    HOST=0.0.0.0 \
    PORT=8000
# Static files are collected at build (no database, no secret needed for that step).
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput --verbosity 0
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
EXPOSE 8000
# The web process by default; compose and Kubernetes name the other roles:
#   python manage.py migrate --noinput   (a one-off, before the others start)
#   python manage.py orchestrate         (two: a leader and a standby)
#   python manage.py rqworker default    (N, scaled on agentbus_queue_depth)
#   python manage.py chroma_serve        (memory; or a Chroma server of your own)
CMD ["sh", "-c", "exec uvicorn agentbus_site.asgi:application --host \"$HOST\" --port \"$PORT\" --ws websockets --lifespan off --proxy-headers --forwarded-allow-ips '*'"]
