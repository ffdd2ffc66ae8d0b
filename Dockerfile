# The operator image: `gastown-operator run` under tini, as a non-root numeric user
# (the Helm chart's restricted securityContext requires runAsNonRoot with a numeric UID).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gastown ./gastown
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 65532:65532
# webhook (HTTPS), metrics, health
EXPOSE 9443 8080 8081
ENTRYPOINT ["tini", "--", "gastown-operator", "run"]
