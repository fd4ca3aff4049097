package supervisor

import (
	"testing"

	"github.com/python-executor/python-executor/supervisor/wire"
)

// Running out of memory is the memory limit whichever MemoryError says so:
// Python's own, or numpy's subclass for an allocation the kernel refuses
// outright (on a machine with less memory than the request, where the
// cgroup never gets the chance to act). Other exceptions stay exceptions.
func TestInterpretAnswerMemoryErrors(t *testing.T) {
	for msg, want := range map[string]wire.ErrorType{
		"MemoryError":                wire.ErrMemoryLimit,
		"MemoryError: out of memory": wire.ErrMemoryLimit,
		"numpy._core._exceptions._ArrayMemoryError: Unable to allocate 8.00 GiB for an array with shape (1073741824,) and data type float64": wire.ErrMemoryLimit,
		"ValueError: MemoryError":         wire.ErrException,
		"RuntimeError: no MemoryError: x": wire.ErrException,
		"MyError: x":                      wire.ErrException,
	} {
		body, err := wire.Marshal(wire.Error{Type: wire.ErrException, Message: msg})
		if err != nil {
			t.Fatal(err)
		}
		_, got := interpretAnswer(wire.Frame{Type: wire.TypeError, Version: wire.Version, Body: body}, 1<<20)
		if got == nil || got.Type != want {
			t.Errorf("exception %q: got %+v, want type %s", msg, got, want)
		}
	}
}
