# The front door. `make run` and `make test` set up whatever is missing first.
.PHONY: all setup build run test test-v2 test-image test-go test-python lint bench soak playground clean

all: build

setup:
	@scripts/setup.sh

build: setup

run: setup
	@scripts/run.sh

test: setup
	@scripts/test.sh

# Builds the image with podman (installed and configured when missing) and
# runs the end-to-end and adversarial suites against it: scripts/image/test.sh.
test-image: setup
	@scripts/image/test.sh

# Boots a cgroup v2 guest (QEMU TCG) and runs both engines' suites in it.
test-v2:
	@scripts/v2/test-v2.sh

# Starts the service with each engine in turn and compares them in one run.
bench: setup
	@scripts/bench.sh

# A bounded soak of the real stack with benign and hostile traffic, each
# engine in turn (SOAK_SECONDS per engine, default 180).
soak: setup
	@scripts/soak.sh

# gofmt, go vet, staticcheck and ruff (pinned; setup installs them).
lint: setup
	@scripts/test.sh lint

# Rebuilds the playground page's script bundle from gateway/playground/web
# (npm ci + esbuild); the bundle is committed, so only a change there needs it.
playground:
	@gateway/playground/web/build.sh

clean:
	rm -rf bin .venv .tools
