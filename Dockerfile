# The service (uvicorn app.main:app on port 8000) with the migration toolkit beside it:
#   docker build -t flowise-proxy .
#   docker run --rm --env-file .env flowise-proxy python migrations/run_migrations.py --all   # migrate
#   docker run -d -p 8000:8000 --env-file .env -e REQUIRE_MIGRATIONS=1 flowise-proxy          # serve
# The app is the default command (CMD, not ENTRYPOINT), so any `python migrations/...` command
# replaces it in `docker run` and runs in the project folder with `docker exec` too.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
# A user of its own; the one folder it may write in /app is backups/, for the toolkit's backups.
RUN useradd --create-home --uid 10001 app && mkdir backups && chown app:app backups

# Dependencies in their own layer: rebuilt only when requirements.txt changes. It is the runtime lock
# (scripts/lock.sh): every package pinned with its hashes, so pip checks each download against them.
COPY requirements.txt .
RUN pip install -r requirements.txt

# Only what runs: the service, the toolkit and the migrations (root-owned, read-only to the app).
COPY app/ app/
COPY migrator/ migrator/
COPY migrations/ migrations/

USER app
EXPOSE 8000
CMD ["uvicorn", "app.main:app", "--host", "0.0.0.0", "--port", "8000"]
