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
}

// Outcome is how an execution ended: exactly one of Result and Err is set.
type Outcome struct {
	Result []byte // main()'s return value as JSON text
	// Files are what the script left in output/ (with a result only),
	// FilesTruncated whether the runner left some out by a cap.
	Files          []wire.File
	FilesTruncated bool
	Err            *wire.Error
	Done           wire.Done
}

// Engine runs executions in jails. Run must return only after every process
// of the execution is gone and its cgroups are removed.
type Engine interface {
	// Name is the engine's name as reported by /health ("cold", "warm").
	Name() string
	Run(ctx context.Context, x *Execution) Outcome
}
