# One image for every role: `docker run IMAGE run bot`, `run web`, `db migrate`, `user ...`; run it with compose, or
# with `docker run --init` and a volume for /data (docs/deploy.md).

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt build-requirements.txt ./
COPY pomogator ./pomogator
COPY piccolo_migrations ./piccolo_migrations
# Build a wheel (the migrations ship inside it) with pinned build tools (build-requirements.txt) and install it with
# its dependencies into a self-contained venv, at the versions the tests passed with (constraints.txt): a rebuild
# months later gets the same tools and libraries. The base image follows 3.11's security releases.
# The bytecode pip compiles is kept: without it every start compiles aiogram & co. again (about 1.5 s more, while
# the image is about 50 MB smaller).
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip install --upgrade -r build-requirements.txt \
    && /opt/venv/bin/pip wheel --no-deps --no-build-isolation -w /tmp/dist . \
    && /opt/venv/bin/pip install -c constraints.txt /tmp/dist/pomogator-*.whl \
    && /opt/venv/bin/pip uninstall -y setuptools

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 pomogator \
    && useradd --system --uid 10001 --gid pomogator --home-dir /data --create-home pomogator
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    POMOGATOR_DATABASE_URL=sqlite:////data/pomogator.sqlite3 \
    POMOGATOR_WEB_HOST=0.0.0.0 \
    POMOGATOR_HEARTBEAT_FILE=/tmp/pomogator.heartbeat
WORKDIR /data
USER 10001:10001
EXPOSE 8080
VOLUME ["/data"]
# Healthy while the running bot or web process keeps its heartbeat fresh (the bot: Telegram answered a poll within
# 75 s and the database answers; the web app: the database answers); a one-shot command (db migrate) has no
# heartbeat and is never marked unhealthy.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["pomogator", "healthcheck"]
ENTRYPOINT ["pomogator"]
CMD ["--help"]
