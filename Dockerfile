# Steward: one image for every process. The command picks the role:
#   steward serve      (default) Slack bot, HTTP on :3000 or Socket Mode
#   steward worker     Celery worker
#   steward scheduler  periodic sweep enqueuer (leader-locked)
#   steward db upgrade Alembic migrations
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

EXPOSE 3000

HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:3000/healthz', timeout=4).status == 200 else 1)"]

CMD ["steward", "serve"]
