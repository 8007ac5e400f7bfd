# Worker image for docker-compose.yml (same code as the embedded stack).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends libsndfile1 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY . .
RUN PYTHON=python3 RESONATE_SKIP_SYSTEM_PACKAGES=1 bash infra/setup.sh
ENV PATH=/app/.venv/bin:$PATH
CMD ["resonate", "worker"]
