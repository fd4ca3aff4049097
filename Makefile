# The front door. `make run` and `make test` set up whatever is missing first.
.PHONY: all setup build run test test-v2 test-go test-python lint bench clean

all: build

setup:
	@scripts/setup.sh

build: setup

run: setup
	@scripts/run.sh

test: setup
	@scripts/test.sh

# Boots a cgroup v2 guest (QEMU TCG) and runs both engines' suites in it.
test-v2:
	@scripts/v2/test-v2.sh

# Starts the service with each engine in turn and compares them in one run.
bench: setup
	@scripts/bench.sh

lint:
	@scripts/test.sh lint

clean:
	rm -rf bin .venv
