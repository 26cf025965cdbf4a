# taskapi image: the API and its migrations (`taskapi serve`, `taskapi migrate`).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PATH="/app/.venv/bin:$PATH"

RUN pip install --no-cache-dir uv
WORKDIR /app

# Dependencies first, so code changes do not reinstall them.
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project

COPY piccolo_conf.py ./
COPY piccolo_migrations ./piccolo_migrations
COPY app ./app
RUN uv sync --frozen --no-dev

RUN useradd --create-home --uid 10001 taskapi
USER taskapi
EXPOSE 8000
# Serving on 0.0.0.0 needs TASKAPI_SECRET_KEY (docker run -e TASKAPI_SECRET_KEY=...): without it
# `taskapi serve` exits 2, since a generated secret would differ per container.
CMD ["taskapi", "serve", "--host", "0.0.0.0", "--port", "8000", "--no-migrate"]
