package engine

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/wire"
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
		_, got := interpretAnswer(wire.Frame{Type: wire.TypeError, Version: wire.Version, Body: body}, DefaultLimits(), false)
		if got == nil || got.Type != want {
			t.Errorf("exception %q: got %+v, want type %s", msg, got, want)
		}
	}
}

// The kernel's SIGKILL at the hard CPU limit arrives when the measured CPU
// time may still trail the limit by a little; a SIGKILL well short of it is
// not the limit.
func TestCPULimitKill(t *testing.T) {
	for _, c := range []struct {
		sig   syscall.Signal
		cpuMS int64
		want  bool
	}{
		{syscall.SIGXCPU, 10, true},
		{syscall.SIGKILL, 1000, true},
		{syscall.SIGKILL, 980, true},
		{syscall.SIGKILL, 900, true},
		{syscall.SIGKILL, 700, false},
		{syscall.SIGKILL, 83, false},
		{syscall.SIGSEGV, 1000, false},
	} {
		if got := cpuLimitKill(int(c.sig), c.cpuMS, time.Second); got != c.want {
			t.Errorf("cpuLimitKill(%v, %d ms, 1s) = %v, want %v", c.sig, c.cpuMS, got, c.want)
		}
	}
}

// An early answer carries the wall time up to the answer, and the outcome
// Run returns the wall time up to the end of the teardown.
func TestTimedRunStampsEarlyAnswer(t *testing.T) {
	var answered []Outcome
	x := &Execution{Answer: func(out Outcome) { answered = append(answered, out) }}
	out := TimedRun(t.Context(), x, func(_ context.Context, x *Execution) (Outcome, error) {
		time.Sleep(30 * time.Millisecond)
		early := Outcome{Result: []byte("1")}
		x.Answer(early)
		time.Sleep(60 * time.Millisecond)
		return early, nil
	})
	if len(answered) != 1 {
		t.Fatalf("answered %d times", len(answered))
	}
	if a := answered[0].Done.WallMS; a < 30 || a >= out.Done.WallMS || out.Done.WallMS < 90 {
		t.Fatalf("wall time %d ms at the answer, %d ms at the end", a, out.Done.WallMS)
	}
}
