#!/usr/bin/env bash
# test.sh: run every test of the project against the real nsjail: formatting
# and vet, the Go unit and integration tests, and the runner's pytest suite.
# Expects scripts/setup.sh to have run (make test does that). Needs root: the
# integration tests start the real supervisor, which creates namespaces and
# cgroups. Nothing skips: under CI=true a missing prerequisite fails the run.
#
#   scripts/test.sh          everything
#   scripts/test.sh lint     gofmt and go vet only
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"

step() { echo "== $*" >&2; }

step "gofmt"
bad="$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.venv/*'))"
if [ -n "$bad" ]; then
	echo "gofmt needed on:" >&2
	echo "$bad" >&2
	exit 1
fi
step "go vet"
go vet ./...
[ "${1:-}" = lint ] && exit 0

if [ "$(id -u)" != 0 ]; then
	echo "test: the integration tests need root (real nsjail, namespaces, cgroups)" >&2
	exit 1
fi

# The gateway's tests run the README's curl commands verbatim.
if ! command -v curl >/dev/null; then
	step "installing curl"
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

step "go test"
# -p 1: the integration suites each start real supervisors and jails; running
# packages in parallel on a 2-core machine only makes deadlines flaky.
go test -p 1 -count=1 -timeout 30m ./...

step "pytest (runner)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider runner/tests
