#!/usr/bin/env bash
# test.sh: run every test of the project against the real nsjail: the lint
# (gofmt, go vet, staticcheck, ruff), the Go unit and integration tests, and
# the runner's pytest suite.
# Expects scripts/setup.sh to have run (make test does that). Needs root: the
# integration tests start the real supervisor, which creates namespaces and
# cgroups. Nothing skips: under CI=true a missing prerequisite fails the run.
#
#   scripts/test.sh          everything
#   scripts/test.sh lint     the lint only (make lint)
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

# have_tool reports whether a lint tool that setup.sh installs is there. A
# missing one fails the run under CI=true; elsewhere it is skipped with a
# warning (make lint and make test run setup first, so it is there).
have_tool() {
	[ -x "$2" ] && return 0
	if [ "${CI:-}" = true ]; then
		echo "lint: $1 is missing ($2); scripts/setup.sh installs it" >&2
		exit 1
	fi
	echo "lint: WARNING: $1 is missing ($2): NOT RUN; scripts/setup.sh installs it" >&2
	return 1
}
# Both linters run before either failure stops the run, so one pass shows
# everything to fix.
lint_failed=""
step "staticcheck"
if have_tool staticcheck "$ROOT/.tools/bin/staticcheck"; then
	"$ROOT/.tools/bin/staticcheck" ./... || lint_failed="$lint_failed staticcheck"
fi
step "ruff"
if have_tool ruff "$VENV/bin/ruff"; then
	# ruff.toml holds the rules; no cache, so nothing is written into the
	# checkout.
	"$VENV/bin/ruff" check --no-cache --quiet . || lint_failed="$lint_failed ruff"
fi
if [ -n "$lint_failed" ]; then
	echo "lint: failed:$lint_failed" >&2
	exit 1
fi
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

step "go test: warm isolation suites with the slim zygote kind off"
# By default the warm engine runs scripts that name none of the preloaded modules
# (most attacks) on its slim zygotes. The cross-execution and adversarial tests run
# once more with the slim kind off (PYEXEC_SLIM_ZYGOTES=0 reaches every supervisor
# the tests start), so that they pass on the preloaded zygotes too: the warm engine
# only, this subset only (about a minute).
PYEXEC_SLIM_ZYGOTES=0 PYEXEC_TEST_ENGINES=warm go test -p 1 -count=1 -timeout 15m \
	-run '^(TestAdversarial|TestConcurrentExecutionsIsolated|TestMemoryBombBesideNormalExecution|TestSocketFamilies|TestHostileRunner|TestIOAdversarial|TestAdversarialStreamFlood|TestDegradedBombsBesideNeighbour)$' ./gateway/e2e
PYEXEC_SLIM_ZYGOTES=0 PYEXEC_TEST_ENGINES=warm go test -p 1 -count=1 -timeout 5m \
	-run '^TestNoStateCrossesExecutions$' ./supervisor

step "pytest (runner)"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider runner/tests
