package warm

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/python-executor/python-executor/internal/jail"
)

// The zygote protocol's golden messages (runner/ZYGOTE.md): the supervisor
// writes init and order, which runner/tests/test_zygote_protocol.py reads
// with the zygote's own parsers; the zygote writes ready and the reports,
// which this test reads with the supervisor's types.

var updateZygoteGolden = flag.Bool("update-zygote-golden", false, "rewrite the golden messages the supervisor writes")

// zygoteGoldenDir is runner/testdata/zygote in this checkout.
func zygoteGoldenDir(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	for dir := filepath.Dir(file); dir != "/"; dir = filepath.Dir(dir) {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "runner", "testdata", "zygote")
		}
	}
	t.Fatal("no go.mod above " + file)
	return ""
}

// goldenLimits are the limits of the golden order.
var goldenZygoteLimits = jail.Limits{
	Wall: 30 * time.Second, MemoryBytes: 512 << 20, Pids: 64, CPUTime: 30 * time.Second,
	FileSizeBytes: 64 << 20, OpenFiles: 256, TmpBytes: 64 << 20, TmpInodes: 4096,
}

func TestZygoteGoldenSupervisorMessages(t *testing.T) {
	dir := zygoteGoldenDir(t)
	spec, err := jail.ChildSpec(testPolicy(), goldenZygoteLimits, true)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := spec.ChildSetup()
	if err != nil {
		t.Fatal(err)
	}
	// A fixed two-instruction program (load the syscall number, allow)
	// instead of the real filter, which is checked elsewhere: the golden
	// message pins the format.
	setup.Seccomp = []byte{0x20, 0, 0, 0, 0, 0, 0, 0, 0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}
	init := zygoteInit{V: zygoteProtocol, Preload: []string{"numpy", "pandas"}, Child: setup}
	withCgroup, err := newOrder(testPolicy(), goldenZygoteLimits, true)
	if err != nil {
		t.Fatal(err)
	}
	without, err := newOrder(testPolicy(), goldenZygoteLimits, false)
	if err != nil {
		t.Fatal(err)
	}
	for name, msg := range map[string]any{"init": init, "order": withCgroup, "order_no_cgroup": without} {
		got, err := msgpack.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name+".msgpack")
		if *updateZygoteGolden {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test ./supervisor -run TestZygoteGolden -update-zygote-golden writes it)", err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s message differs from %s: the protocol changed; update runner/ZYGOTE.md, the version and the golden messages\ngot  %x\nwant %x", name, path, got, want)
		}
	}
}

func TestZygoteGoldenZygoteMessages(t *testing.T) {
	dir := zygoteGoldenDir(t)
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, name+".msgpack"))
		if err != nil {
			t.Fatalf("%v (PYEXEC_UPDATE_GOLDEN=1 pytest runner/tests/test_zygote_protocol.py writes it)", err)
		}
		return b
	}
	var ready zygoteReady
	if err := msgpack.Unmarshal(read("ready"), &ready); err != nil {
		t.Fatal(err)
	}
	if ready.V != zygoteProtocol || !slices.Equal(ready.Failed, []string{"pandas: ImportError: no pandas"}) ||
		!slices.Equal(ready.Warmed, []string{"hello", "exception"}) || ready.HugeKB != 2048 || ready.Threads != 1 {
		t.Errorf("ready = %+v", ready)
	}
	var report childReport
	if err := msgpack.Unmarshal(read("report"), &report); err != nil {
		t.Fatal(err)
	}
	if report.Status == nil || *report.Status != 9 || report.UtimeUS != 1500 || report.StimeUS != 250 || report.MaxRSSKB != 30000 || report.Error != "" {
		t.Errorf("report = %+v", report)
	}
	var failed childReport
	if err := msgpack.Unmarshal(read("error"), &failed); err != nil {
		t.Fatal(err)
	}
	if failed.Status != nil || failed.Error != "set-up of the script's process: SetupError: mount /tmp: Operation not permitted" {
		t.Errorf("error report = %+v", failed)
	}
}
