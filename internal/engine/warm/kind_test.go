package warm

import (
	"context"
	"errors"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
)

func TestChooseKind(t *testing.T) {
	modules := topLevelModules([]string{"numpy", "pandas", "matplotlib.pyplot"})
	if want := []string{"numpy", "pandas", "matplotlib"}; !slices.Equal(modules, want) {
		t.Fatalf("topLevelModules = %q, want %q", modules, want)
	}
	for _, c := range []struct {
		name   string
		script string
		want   Kind
	}{
		{"hello", "def main():\n    return {'message': 'Hello World'}\n", KindSlim},
		{"stdlib only", "import json, math\ndef main(): return math.pi\n", KindSlim},
		// Hidden from the text: slim, and still correct there (the venv
		// has numpy; the child imports it itself, slowly).
		{"dynamic import", "def main():\n    np = __import__(\"num\" + \"py\")\n    return int(np.arange(3).sum())\n", KindSlim},
		{"import pandas as pd", "import pandas as pd\ndef main(): return pd.__version__\n", KindPreloaded},
		{"from matplotlib import pyplot", "from matplotlib import pyplot\ndef main(): return 1\n", KindPreloaded},
		{"numpy inside main", "def main():\n    import numpy\n    return 1\n", KindPreloaded},
		// Only named, never imported: the bigger process, today's path.
		{"mentioned in a comment", "# no numpy here\ndef main(): return 1\n", KindPreloaded},
		// A figure needs matplotlib, which the text names; images taken
		// or not (every gateway connection takes them) is no signal.
		{"plot", "import pandas as pd\ndef main():\n    pd.Series([1, 2]).plot()\n", KindPreloaded},
		{"empty script", "", KindSlim},
	} {
		if got := chooseKind(c.script, modules); got != c.want {
			t.Errorf("%s: chooseKind = %v, want %v", c.name, got, c.want)
		}
	}
	// Derived from the preload, not hard-coded.
	if got := chooseKind("import numpy", topLevelModules([]string{"scipy.stats"})); got != KindSlim {
		t.Errorf("numpy script with a scipy preload: %v, want slim", got)
	}
	if got := chooseKind("from scipy import stats", topLevelModules([]string{"scipy.stats"})); got != KindPreloaded {
		t.Errorf("scipy script with a scipy preload: %v, want preloaded", got)
	}
}

func TestTopLevelModules(t *testing.T) {
	for _, c := range []struct {
		preload, want []string
	}{
		{nil, nil},
		{[]string{"matplotlib.pyplot", "matplotlib", "numpy"}, []string{"matplotlib", "numpy"}},
		{[]string{"a.b.c"}, []string{"a"}},
	} {
		if got := topLevelModules(c.preload); !slices.Equal(got, c.want) {
			t.Errorf("topLevelModules(%q) = %q, want %q", c.preload, got, c.want)
		}
	}
}

// With the slim kind off (no slim slots), every execution goes to the
// preloaded kind, whatever the script.
func TestKindForWithoutSlim(t *testing.T) {
	e := &warmEngine{modules: []string{"numpy"}}
	e.pools[KindPreloaded] = &zygotePool{kind: KindPreloaded, slots: []*zygoteSlot{{}}}
	e.pools[KindSlim] = &zygotePool{kind: KindSlim}
	if k := e.kindFor(testExecution("def main(): return 1")); k != KindPreloaded {
		t.Errorf("slim kind off: %v, want preloaded", k)
	}
	e.pools[KindSlim].slots = []*zygoteSlot{{}}
	if k := e.kindFor(testExecution("def main(): return 1")); k != KindSlim {
		t.Errorf("slim kind on: %v, want slim", k)
	}
}

func testExecution(script string) *engine.Execution {
	return &engine.Execution{Script: script}
}

// testPools is an engine with one slot of each kind, zygotes ready.
func testPools(t *testing.T) (*warmEngine, *zygoteProc, *zygoteProc) {
	t.Helper()
	e := &warmEngine{zygoteWait: 30 * time.Millisecond}
	for k := range e.pools {
		p := &zygotePool{kind: Kind(k), spares: make(chan *spare, 1)}
		p.slots = []*zygoteSlot{{idx: k, pool: p}}
		e.pools[k] = p
	}
	// The test process stands in for the zygotes: live, not exiting.
	pre := &zygoteProc{pool: e.pools[KindPreloaded], pid: os.Getpid()}
	slim := &zygoteProc{pool: e.pools[KindSlim], pid: os.Getpid()}
	e.pools[KindPreloaded].slots[0].set(pre)
	e.pools[KindSlim].slots[0].set(slim)
	return e, pre, slim
}

// pick prefers the execution's kind, takes the other rather than wait, and
// waits (then fails) only when neither has a ready zygote. Readiness counts
// the preloaded kind only.
func TestPickFallsBackToTheOtherKind(t *testing.T) {
	e, pre, slim := testPools(t)
	ctx := context.Background()
	want := func(kind Kind, z *zygoteProc) {
		t.Helper()
		got, err := e.pick(ctx, kind)
		if got != z || (z == nil) != errors.Is(err, errNoZygote) {
			t.Errorf("pick(%v) = %p, %v; want %p", kind, got, err, z)
		}
	}
	want(KindSlim, slim)
	want(KindPreloaded, pre)
	if why := e.NotReady(0); why != "" {
		t.Errorf("not ready with both kinds ready: %s", why)
	}
	e.pools[KindSlim].slots[0].set(nil) // restarting
	want(KindSlim, pre)
	pre.broken.Store(true)
	want(KindSlim, nil)
	want(KindPreloaded, nil)
	e.pools[KindSlim].slots[0].set(slim)
	want(KindPreloaded, slim)
	time.Sleep(time.Millisecond)
	if why := e.NotReady(0); why == "" {
		t.Error("ready with only a slim zygote: /health would promise numpy scripts at speed")
	}
}

// A slim script takes a preloaded spare when no slim one is ready; a
// preloaded script never takes a slim spare; other limits take none.
func TestTakeSpareByKind(t *testing.T) {
	e, pre, slim := testPools(t)
	lim := jail.Limits{MemoryBytes: 256 << 20, Pids: 64}
	e.spareLimits = newSpareTarget(spareKey(lim))
	newSpare := func(z *zygoteProc) *spare {
		t.Helper()
		sp, _ := offerSleeper(t, z, spareKey(lim))
		return sp
	}
	take := func(kind Kind, l jail.Limits, want *spare) {
		t.Helper()
		if got := e.takeSpare(l, kind); got != want {
			t.Errorf("takeSpare(%v) = %p, want %p", kind, got, want)
		}
	}
	s1, p1 := newSpare(slim), newSpare(pre)
	take(KindSlim, lim, s1)
	take(KindPreloaded, lim, p1)
	p2 := newSpare(pre)
	take(KindSlim, lim, p2) // no slim spare: the preloaded one
	s2 := newSpare(slim)
	take(KindPreloaded, lim, nil) // never a slim one
	take(KindSlim, jail.Limits{MemoryBytes: 64 << 20, Pids: 64}, nil)
	take(KindSlim, lim, s2)
}

// OnPreloaded sends every script to the preloaded kind, and is nil when
// there is no slim kind.
func TestOnPreloaded(t *testing.T) {
	e, _, _ := testPools(t)
	e.modules = topLevelModules([]string{"numpy", "matplotlib.pyplot"})
	v, ok := e.OnPreloaded().(preloadedView)
	if !ok {
		t.Fatalf("OnPreloaded() = %#v with a slim kind", e.OnPreloaded())
	}
	if k := chooseKind(v.prefix+"def main(): return 1", e.modules); k != KindPreloaded {
		t.Errorf("a script through OnPreloaded goes to %v", k)
	}
	e.pools[KindSlim].slots = nil
	if v := e.OnPreloaded(); v != nil {
		t.Errorf("OnPreloaded() = %#v without a slim kind, want nil", v)
	}
}
