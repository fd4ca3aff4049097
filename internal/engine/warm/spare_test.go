package warm

import (
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/jail"
)

// exiting tells a live process from one that is gone or a zombie, which is
// how a spare whose zygote is dying is recognised before it is handed out.
func TestExiting(t *testing.T) {
	if exiting(os.Getpid()) {
		t.Error("this live process reads as exiting")
	}
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	// Not reaped yet: a zombie once it has run.
	deadline := time.Now().Add(5 * time.Second)
	for !exiting(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the exited, unreaped child %d does not read as exiting", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	cmd.Wait()
	if !exiting(pid) {
		t.Errorf("the reaped child %d does not read as exiting", pid)
	}
}

// The spares follow the limits executions ask for once 12 of the last 16
// asked for the same ones, and not before: one client with limits of its
// own among others with the defaults, or limits that alternate, change
// nothing.
func TestSpareTargetFollowsMostRecentLimits(t *testing.T) {
	def := jail.Limits{MemoryBytes: 512 << 20, Pids: 64}
	other := jail.Limits{MemoryBytes: 128 << 20, Pids: 64}
	s := newSpareTarget(def)
	observe := func(key jail.Limits, want jail.Limits, wantSwitch bool) {
		t.Helper()
		got, switched := s.observe(key)
		if got != want || switched != wantSwitch {
			t.Fatalf("observe(%v) = %v, %v; want %v, %v", key.MemoryBytes, got.MemoryBytes, switched, want.MemoryBytes, wantSwitch)
		}
	}
	for range 11 {
		observe(other, def, false)
	}
	observe(other, other, true) // 12 of the last 16
	observe(other, other, false)
	for range 11 { // a default now and then takes no spare
		observe(def, other, false)
	}
	observe(def, def, true) // 12 defaults of the last 16: back
	for range 32 {          // alternating: never a switch
		observe(other, def, false)
		observe(def, def, false)
	}
}

// A spare launched with limits the spares no longer follow is ended when
// found, not handed out; one with the new limits is.
func TestStaleSpareIsDiscarded(t *testing.T) {
	e, pre, _ := testPools(t)
	e.log = logrus.NewEntry(logrus.New())
	def := jail.Limits{MemoryBytes: 512 << 20, Pids: 64}
	other := jail.Limits{MemoryBytes: 128 << 20, Pids: 64}
	e.spareLimits = newSpareTarget(def)
	_, stale := offerSleeper(t, pre, def)
	for range spareSwitch - 1 {
		if sp := e.takeSpare(other, KindPreloaded); sp != nil {
			t.Fatal("an execution with other limits took the default spare")
		}
	}
	select {
	case <-time.After(100 * time.Millisecond):
		t.Fatal("the default spare was taken before the spares switched")
	default:
	}
	// The switch: the default spare is found stale and ended.
	if sp := e.takeSpare(other, KindPreloaded); sp != nil {
		t.Fatal("the stale spare was handed out")
	}
	done := make(chan error, 1)
	go func() { done <- stale.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the stale spare's process was not killed")
	}
	e.wg.Wait()
	fresh, _ := offerSleeper(t, pre, other)
	if sp := e.takeSpare(other, KindPreloaded); sp != fresh {
		t.Fatalf("takeSpare = %p, want the spare with the new limits %p", sp, fresh)
	}
	if sp := e.takeSpare(def, KindPreloaded); sp != nil {
		t.Fatal("a default execution took a spare after the switch")
	}
}

// offerSleeper offers a spare of zygote z launched with limits key, whose
// child is a sleep: a live process with a pidfd, and a sync socket whose
// zygote end is closed, as after the zygote's report, so that discarding
// it does not wait.
func offerSleeper(t *testing.T, z *zygoteProc, key jail.Limits) (*spare, *exec.Cmd) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	fd, err := unix.PidfdOpen(cmd.Process.Pid, 0)
	if err != nil {
		t.Fatal(err)
	}
	files, err := newOrderFiles()
	if err != nil {
		t.Fatal(err)
	}
	files.closeTheirs()
	sp := &spare{zygote: z, child: &zygoteChild{pid: cmd.Process.Pid, pidfd: fd, sync: files.sync}, files: files, key: key}
	z.pool.spares <- sp
	return sp, cmd
}
