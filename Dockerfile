FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    DATABASE_PATH=/data/bot.db TEMPLATES_DIR=/app/templates

# Fonts for contact-sheet labels in Latin and CJK scripts (the slim image has none).
RUN apt-get update \
    && apt-get install -y --no-install-recommends fonts-dejavu-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 bot && mkdir /data && chown bot /data
WORKDIR /app

# Dependency layer: only pyproject changes invalidate it.
COPY pyproject.toml README.md ./
RUN mkdir -p bot cogs bot/adapters/prompts bot/adapters/store/schema templates \
    && touch bot/__init__.py cogs/__init__.py bot/adapters/prompts/__init__.py bot/adapters/store/schema/__init__.py \
    && pip install . && pip uninstall -y nano-banana-bot

COPY bot ./bot
COPY cogs ./cogs
COPY templates ./templates
RUN pip install --no-deps .

USER bot
VOLUME ["/data"]
ENTRYPOINT ["python", "-m", "bot"]
CMD ["run"]
