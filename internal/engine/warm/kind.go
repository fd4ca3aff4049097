package warm

import (
	"context"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/python-executor/python-executor/internal/engine"
)

// Kind is what a zygote imported before it forks its children. Both kinds
// are the same zygote (runner/zygote.py) in the same jail, and their
// children get the same set-up and isolation from the same jail.Spec; only
// the preload differs.
type Kind int

const (
	// KindPreloaded zygotes import the configured preload (numpy, pandas,
	// matplotlib by default) and run its warm-ups.
	KindPreloaded Kind = iota
	// KindSlim zygotes import nothing beyond the runner: a process a
	// fraction of the size, so the fork, its page-table copy, the
	// copy-on-write faults after it and the child's exit are cheaper, for
	// scripts that use none of the preloaded modules.
	KindSlim
)

func (k Kind) String() string {
	if k == KindSlim {
		return "slim"
	}
	return "preloaded"
}

// chooseKind picks the zygote kind for a script: preloaded when its text
// mentions any of modules (the preload's top-level names) anywhere, slim
// otherwise.
//
// Whether the client takes images (engine.Execution.Images) is no signal:
// the gateway agrees to images on every connection, so every HTTP request
// would go to the preloaded kind. A figure needs matplotlib imported, which
// the text names; a slim child whose script imports it under a hidden name
// still returns its figures (the runner captures them whenever pyplot is
// loaded, as in the cold engine, which preloads nothing).
//
// This is a speed heuristic, never a correctness or isolation decision: a
// slim child has the same venv and can import numpy too, only it pays the
// import itself (a second or so), and a preloaded child can run anything. A
// script that hides its imports (__import__("num"+"py")) still gets the
// right answer, just slowly; a script that merely names a module in a
// comment gets the bigger process, which is today's path.
func chooseKind(script string, modules []string) Kind {
	for _, m := range modules {
		if strings.Contains(script, m) {
			return KindPreloaded
		}
	}
	return KindSlim
}

// topLevelModules are the distinct top-level package names of a preload
// list ("matplotlib.pyplot" gives "matplotlib"), the names chooseKind looks
// for: importing any submodule imports its top-level package.
func topLevelModules(preload []string) []string {
	var names []string
	for _, m := range preload {
		top, _, _ := strings.Cut(m, ".")
		if top != "" && !slices.Contains(names, top) {
			names = append(names, top)
		}
	}
	return names
}

// zygotePool is the zygotes of one kind, their spares and what they share.
type zygotePool struct {
	kind    Kind
	preload []string // what each of its zygotes imports; empty for slim
	slots   []*zygoteSlot
	next    atomic.Uint32 // round robin over slots
	// spares hands out the spares its keepers launched, one keeper per
	// zygote offering one at a time.
	spares chan *spare
	// vm is the largest address space (bytes) one of its zygotes had when
	// it became ready: the room its children's RLIMIT_AS leaves for what
	// they inherit (see warmEngine.encodeOrder). Per kind, so that a slim
	// child does not get the much larger room of a preloaded one.
	vm atomic.Int64
}

// ready returns a ready zygote of the pool, round robin, or nil.
func (p *zygotePool) ready() *zygoteProc {
	n := uint32(len(p.slots))
	if n == 0 {
		return nil
	}
	start := p.next.Add(1)
	for i := uint32(0); i < n; i++ {
		if z := p.slots[(start+i)%n].current(); z != nil && !z.broken.Load() {
			return z
		}
	}
	return nil
}

// OnPreloaded is the engine as a script that names the preloaded modules
// sees it: each execution runs on a preloaded zygote (while one is ready).
// Nil when there is no slim kind: every execution runs on one already. The
// supervisor's start-up self-test runs through it too, so that it proves
// the children of both kinds, not only the slim ones its probes (which
// import nothing) would get.
func (e *warmEngine) OnPreloaded() engine.Engine {
	if len(e.pools[KindSlim].slots) == 0 {
		return nil
	}
	return preloadedView{e: e, prefix: "# " + strings.Join(e.modules, " ") + "\n"}
}

// preloadedView runs executions with a comment naming the preloaded
// modules before their script, which chooseKind sends to the preloaded kind.
type preloadedView struct {
	e      *warmEngine
	prefix string
}

func (v preloadedView) Name() string { return v.e.Name() }

func (v preloadedView) Run(ctx context.Context, x *engine.Execution) engine.Outcome {
	y := *x
	y.Script = v.prefix + x.Script
	return v.e.Run(ctx, &y)
}
