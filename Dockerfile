# One image for web, worker, beat and the simulator; compose.yaml picks the command.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml ./
# Every package pyproject.toml installs (tests/test_compose.py checks the two lists agree).
COPY common ./common
COPY portal ./portal
COPY apiaccess ./apiaccess
COPY inference ./inference
COPY usage ./usage
COPY batches ./batches
COPY ollamasim ./ollamasim
COPY templates ./templates
COPY manage.py ./
RUN pip install . && python manage.py collectstatic --noinput \
    && mkdir -p /app/.run/batch-files \
    && useradd --system --home /app gatehouse && chown -R gatehouse /app
USER gatehouse

EXPOSE 8000
# portal/web.py: daphne with the body guards, listen backlog and idle timeout of production.
CMD ["python", "-m", "portal.web", "-b", "0.0.0.0", "-p", "8000"]
