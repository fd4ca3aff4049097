package bench

import (
	"net/http"

	"github.com/python-executor/python-executor/internal/stack"
)

// UnavailableError says an engine could not be benchmarked because the
// supervisor would not run it.
type UnavailableError = stack.UnavailableError

// service is a running stack with the benchmark's HTTP client.
type service struct {
	*stack.Stack
	http *http.Client
}
