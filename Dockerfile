# One image for the API and the workers (the command differs). CPU torch by default;
# build with --build-arg TORCH="torch==2.11.0" (a CUDA build) and EXTRAS=gpu for GPU workers.
FROM python:3.11-slim
ARG TORCH="torch==2.13.0"
ARG EXTRAS=""
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY sora_encoder sora_encoder
COPY services services
COPY workers workers
COPY sora_cli sora_cli
RUN pip install --no-cache-dir "$TORCH" && pip install --no-cache-dir ".${EXTRAS:+[$EXTRAS]}"
ENV SORA_HOME=/data
VOLUME /data
CMD ["sora", "worker"]
