# The operator image: `gastown-operator run` under tini, as a non-root numeric user
# (the Helm chart's restricted securityContext requires runAsNonRoot with a numeric UID).
#
# Build arguments (the defaults are what a user builds; README "Building the images"):
#   BASE        the Debian-based Python 3.11 image both stages start from. The test lab passes a
#               bookworm base it makes itself (mmdebstrap), as it has no registry to pull from.
#   WHEELHOUSE  empty: pip installs from PyPI. A directory of wheels inside the build context:
#               pip installs from it alone (--no-index), for builders that cannot reach PyPI.
ARG BASE=python:3.11-slim

FROM ${BASE} AS build
ARG WHEELHOUSE=
WORKDIR /src
# A COPY needs a source: without a wheelhouse this copies pyproject.toml, which nothing reads.
COPY ${WHEELHOUSE:-pyproject.toml} /wheelhouse/
COPY pyproject.toml ./
# The dependencies first, from pyproject.toml with an empty package and README, so that a
# change to the sources or the README only reinstalls the package (this layer stays cached).
RUN mkdir gastown && touch gastown/__init__.py README.md \
 && python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir ${WHEELHOUSE:+--no-index --find-links /wheelhouse} . \
 && rm -r gastown README.md
COPY README.md ./
COPY gastown ./gastown
RUN /opt/venv/bin/pip install --no-cache-dir --no-deps --force-reinstall \
      ${WHEELHOUSE:+--no-index --find-links /wheelhouse} .

FROM ${BASE}
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
