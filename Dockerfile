# streamseg worker / generator image: docker build -t streamseg .
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streamseg ./streamseg
RUN pip install --no-compile . && useradd --system --uid 10001 streamseg
USER streamseg
# /metrics, /healthz, /readyz
EXPOSE 6066
ENTRYPOINT ["streamseg"]
CMD ["worker"]
