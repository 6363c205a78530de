# One image for every Python service: web (`newsletter serve`), worker and beat (`celery -A
# workers …`) and the one-shot `newsletter db upgrade`. See docker-compose.yml.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY . .
# Templates and migrations ship inside the package, so the installed code finds them anywhere.
RUN pip install . \
 && useradd --create-home --uid 10001 app \
 && mkdir -p /var/lib/newsletter \
 && chown app /var/lib/newsletter

USER app
EXPOSE 8000
CMD ["newsletter", "serve", "--host", "0.0.0.0", "--port", "8000"]
