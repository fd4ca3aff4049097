#!/usr/bin/env bash
# drive.sh TOOL [ARGS...]: run bin/TOOL (bench or soak), which starts the real
# stack itself, with the checkout's binaries, venv and runner. Shared by
# bench.sh and soak.sh (see their headers for what each measures).
# Environment: BIN (default <repo>/bin, built first when go is on PATH; a BIN
# given is used as it is), VENV (<repo>/.venv). Needs root and make setup.
set -euo pipefail

tool="$1"
shift
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"

die() { echo "$tool: error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root: $tool starts the supervisor, which creates namespaces and cgroups"
[ -x "$VENV/bin/python3" ] || die "no venv at $VENV: run make setup"
if [ -z "${BIN:-}" ]; then
	BIN="$ROOT/bin"
	if command -v go >/dev/null; then
		# Incremental: prints nothing and takes a moment when up to date.
		(cd "$ROOT" && go build -o "$BIN/" "./cmd/$tool" ./cmd/supervisor ./cmd/gateway)
	fi
fi
for b in "$tool" supervisor gateway; do
	[ -x "$BIN/$b" ] || die "$BIN/$b missing: run make setup"
done

# The tool handles SIGINT and SIGTERM itself: it stops the stack in order and
# checks that nothing is left. It runs in the background so that a SIGTERM
# sent to this script alone reaches it too; the second wait collects its
# real status after a trap interrupted the first.
"$BIN/$tool" -bin "$BIN" -venv "$VENV" -runner "$ROOT/runner/runner.py" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
set +e
wait "$pid"
rc=$?
while kill -0 "$pid" 2>/dev/null; do
	wait "$pid"
	rc=$?
done
exit "$rc"
