# The front door. `make run` and `make test` set up whatever is missing first.
.PHONY: all setup build run test test-go test-python lint bench clean

all: build

setup:
	@scripts/setup.sh

build: setup

run: setup
	@scripts/run.sh

test: setup
	@scripts/test.sh

lint:
	@scripts/test.sh lint

clean:
	rm -rf bin .venv
