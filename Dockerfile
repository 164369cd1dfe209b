# One image for both process types (web and worker), as on a PaaS.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TIKTOKEN_CACHE_DIR=/app/.cache/tiktoken \
    PORT=8000

WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# bake the tokenizer files into the image: no download at run time
RUN python -c "from sluice.tokens import seed_tiktoken_cache; seed_tiktoken_cache()" \
    && useradd --create-home sluice && chown -R sluice /app
USER sluice

EXPOSE 8000
CMD ["gunicorn", "--no-control-socket", "--config", "gunicorn.conf.py", "gateway.wsgi:app"]
