package engine

import (
	"context"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/wire"
)

// Execution is one admitted request, handed to an Engine.
type Execution struct {
	ID     string
	Script string
	// Args (JSON text of an object, nil = none) and Files are the request's
	// arguments and input files (wire.FeatureIO), already checked against
	// the limits by the supervisor.
	Args   []byte
	Files  []wire.File
	Limits LimitSet
	Log    *logrus.Entry
	// Stdout and Stderr receive each kept chunk of output as it is read, in
	// order. They are called from the engine's reader goroutines and must not
	// block for long. Nil drops the chunks.
	Stdout func([]byte)
	Stderr func([]byte)
	// Images asks for the figures main() leaves open, as PNGs (the client
	// agreed to wire.FeatureImages), within MaxImages and MaxImageBytes.
	Images bool
	// Answer, when set, may receive the outcome as soon as it is known,
	// before the sandbox's processes are gone: their teardown (exit,
	// namespaces, the cgroup's removal) then no longer delays the caller.
	// Run still returns only once they are gone, and returns that same
	// outcome; Answer is called at most once, from Run's goroutine. An
	// engine that never calls it just returns the outcome.
	Answer func(Outcome)
	// Gone, when set, may be called once every process of the execution
	// has exited, before Run returns: what is left (reaping, the cgroup's
	// removal, the outcome's bookkeeping) uses no slot's worth of CPU or
	// memory, and the caller may stop counting the execution against its
	// slots. At most once, from any goroutine; never after Run returned.
	// An engine that never calls it leaves the slot held until Run returns.
	Gone func()
}

// The caps on images: how many, how many bytes in all, and the largest
// raster a figure may have (the runner checks it before drawing, so a
// figure of a million inches cannot make it allocate). Fixed, like the frame
// envelope: the result frame must fit the clients' frame limit.
const (
	MaxImages      = 16
	MaxImageBytes  = 4 << 20
	MaxImagePixels = 16 << 20
)

// Outcome is how an execution ended: exactly one of Result and Err is set.
type Outcome struct {
	Result []byte // main()'s return value as JSON text
	// Files are what the script left in output/ (with a result only),
	// FilesTruncated whether the runner left some out by a cap.
	Files          []wire.File
	FilesTruncated bool
	// Images are the figures main() left open (only with Execution.Images);
	// ImagesTruncated says some were left out for the caps.
	Images          []wire.Image
	ImagesTruncated bool
	Err             *wire.Error
	Done            wire.Done
}

// Engine runs executions in jails. Run must return only after every process
// of the execution is gone and its cgroups are removed (the caller holds
// the execution's slot until then), though it may answer before
// (Execution.Answer).
type Engine interface {
	// Name is the engine's name as reported by /health ("cold", "warm").
	Name() string
	Run(ctx context.Context, x *Execution) Outcome
}
