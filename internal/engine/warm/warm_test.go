package warm

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/python-executor/python-executor/internal/jail"
)

// testPolicy is a full-tier policy like the one PrepareHost builds.
func testPolicy() jail.Policy {
	return jail.Policy{
		Python:     "/opt/python-executor/venv/bin/python3",
		Args:       []string{"/opt/python-executor/runner.py"},
		Mounts:     []jail.Mount{{Kind: jail.Bind, Src: "/usr", Dst: "/usr"}},
		OutsideUID: 995,
		OutsideGID: 994,
		Env:        []string{"HOME=/tmp", "PYEXEC_REQUEST_FD=3", "PYEXEC_RESULT_FD=4"},
		Seccomp:    true,
	}
}

func TestNewOrderMirrorsColdRounding(t *testing.T) {
	l := jail.Limits{
		Wall: time.Second, MemoryBytes: 100<<20 + 1, Pids: 64, CPUTime: 1500 * time.Millisecond,
		FileSizeBytes: 1, OpenFiles: 256, TmpBytes: 64 << 20, TmpInodes: 4096,
	}
	rlimits := func(o zygoteOrder) map[string]uint64 {
		m := map[string]uint64{}
		for _, r := range o.Rlimits {
			m[r.Name] = r.Value
		}
		return m
	}
	o, err := newOrder(testPolicy(), l, true)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]uint64{"core": 0, "cpu": 2, "fsize": 1 << 20, "nofile": 256, "stack": 8 << 20}
	if got := rlimits(o); !maps.Equal(got, want) {
		t.Errorf("newOrder(%+v, true) rlimits = %v, want %v", l, got, want)
	}
	var mounts []string
	for _, m := range o.Mounts {
		mounts = append(mounts, fmt.Sprintf("%s %s %#x %s", m.FSType, m.Target, m.Flags, m.Data))
	}
	wantMounts := []string{
		"proc /proc 0xf ",
		"tmpfs /tmp 0xe size=67108864,nr_inodes=4096,mode=1777",
		fmt.Sprintf("tmpfs /dev/shm 0xe size=67108864,nr_inodes=%d,mode=1777", jail.ShmInodes),
	}
	if !slices.Equal(mounts, wantMounts) {
		t.Errorf("mounts = %q, want %q", mounts, wantMounts)
	}
	// The child's cgroup gets the limits of the same Spec (no swap).
	if c := o.cgroup; c.MemoryBytes != l.MemoryBytes || c.Pids != l.Pids || c.SwapBytes != 0 || !c.OOMGroup {
		t.Errorf("newOrder(%+v, true) cgroup = %+v, want memory %d, pids %d, no swap, OOM group", l, c, l.MemoryBytes, l.Pids)
	}
	o, err = newOrder(testPolicy(), l, false)
	if err != nil {
		t.Fatal(err)
	}
	if !o.cgroup.IsZero() {
		t.Errorf("newOrder(%+v, false) cgroup = %+v, want none", l, o.cgroup)
	}
	want["nproc"], want["as"] = 64, 101<<20
	if got := rlimits(o); !maps.Equal(got, want) {
		t.Errorf("newOrder(%+v, false) rlimits = %v, want %v", l, got, want)
	}
}

// The order of the default limits, derived once, is the one derived per
// execution; the RLIMIT_AS room for the zygote's address space is added to
// a copy.
func TestDefaultOrderIsTheDerivedOne(t *testing.T) {
	l := jail.Limits{
		Wall: time.Second, MemoryBytes: 256 << 20, Pids: 64, CPUTime: time.Second,
		FileSizeBytes: 1 << 20, OpenFiles: 256, TmpBytes: 64 << 20, TmpInodes: 4096,
	}
	e := &warmEngine{policy: testPolicy(), defaultKey: spareKey(l)}
	var err error
	if e.defaultOrder, err = newOrder(e.policy, l, false); err != nil {
		t.Fatal(err)
	}
	preloaded, slim := &zygotePool{kind: KindPreloaded}, &zygotePool{kind: KindSlim}
	preloaded.vm.Store(300 << 20)
	slim.vm.Store(3 << 20)
	encode := func(p *zygotePool) []byte {
		t.Helper()
		o, err := e.newOrder(l, false)
		if err != nil {
			t.Fatal(err)
		}
		body, err := encodeOrder(o, p)
		if err != nil {
			t.Fatal(err)
		}
		return body
	}
	cached := encode(slim)
	again := encode(slim)
	// Encoding for another zygote kind leaves the cached order alone.
	bigger := encode(preloaded)
	e.defaultKey = jail.Limits{}
	fresh := encode(slim)
	if !bytes.Equal(cached, fresh) || !bytes.Equal(again, fresh) {
		t.Errorf("cached order %x, again %x, fresh %x", cached, again, fresh)
	}
	for _, c := range []struct {
		body []byte
		want uint64
	}{{fresh, 259 << 20}, {bigger, 556 << 20}, {encode(slim), 259 << 20}} {
		var o zygoteOrder
		if err := msgpack.Unmarshal(c.body, &o); err != nil {
			t.Fatal(err)
		}
		// Each child gets the room of its own zygote's address space, so
		// a slim child's limit is not widened by a preloaded zygote's.
		if o.Rlimits[0].Name != "as" || o.Rlimits[0].Value != c.want {
			t.Errorf("RLIMIT_AS %+v, want %d MiB (256 MiB + its zygote's)", o.Rlimits[0], c.want>>20)
		}
	}
}

// A spare's limits have no wall time (the supervisor enforces it).
func TestOrderWithoutWallTime(t *testing.T) {
	l := jail.Limits{MemoryBytes: 256 << 20, Pids: 64, CPUTime: time.Second, FileSizeBytes: 1 << 20, OpenFiles: 256, TmpBytes: 64 << 20, TmpInodes: 4096}
	if _, err := newOrder(testPolicy(), l, true); err != nil {
		t.Error(err)
	}
}
