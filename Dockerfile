# Steward: one image for every process. The command picks the role:
#   steward serve      (default) Slack bot, HTTP on :3000 or Socket Mode
#   steward worker     Celery worker (/healthz, /readyz, /metrics on :8001)
#   steward scheduler  periodic sweep enqueuer, leader-locked (health on :8002)
#   steward db upgrade Alembic migrations
#   steward doctor     checks configuration, database, broker, Slack token, scopes and policy
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 steward \
 && useradd --system --uid 10001 --gid steward --home-dir /app --shell /usr/sbin/nologin steward

WORKDIR /app

COPY pyproject.toml README.md ./
COPY steward/ steward/
COPY bot/ bot/
COPY workers/ workers/
COPY workflows/ workflows/

RUN pip install . \
 && mkdir -p /app/.steward \
 && chown -R steward:steward /app

ENV STEWARD_HOME=/app/.steward

USER steward

# Slack reaches the bot here (HTTP mode); the worker's and scheduler's health ports stay internal.
EXPOSE 3000

# For the default command (the bot). Other roles set their own: docker-compose.yml probes each
# process's /readyz on its health port. `steward probe` because the slim image has no curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["steward", "probe", "http://127.0.0.1:3000/readyz"]

CMD ["steward", "serve"]
