package stack

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestTailKeepsTheEndAndTheErrors(t *testing.T) {
	tl := &Tail{}
	tl.Write([]byte(strings.Repeat("x", tailBytes+100) + "\n"))
	if n := len(tl.String()); n != tailBytes {
		t.Errorf("tail kept %d bytes, want %d", n, tailBytes)
	}
	tl = &Tail{}
	tl.Write([]byte(`{"severity":"INFO","message":"starting"}` + "\n"))
	// A line written in two pieces is one line.
	tl.Write([]byte(`{"severity":"ERROR","message":"supervisor stopped",`))
	tl.Write([]byte(`"error":"unknown engine \"warm\""}` + "\n" + `{"severity":"INFO","message":"bye"}` + "\n"))
	if got, want := tl.LastError(), `supervisor stopped: unknown engine "warm"`; got != want {
		t.Errorf("LastError() = %q, want %q", got, want)
	}
	if got := tl.ErrorLines(); !strings.Contains(got, `"message":"supervisor stopped"`) || strings.Contains(got, "bye") {
		t.Errorf("ErrorLines() = %q, want the error line only", got)
	}
	// An error line pushed out of the byte tail by a busy log is kept.
	tl.Write([]byte(strings.Repeat(`{"severity":"INFO","message":"busy"}`+"\n", tailBytes/20)))
	if got, want := tl.LastError(), `supervisor stopped: unknown engine "warm"`; got != want {
		t.Errorf("LastError() after a busy log = %q, want %q", got, want)
	}
	tl = &Tail{}
	tl.Write([]byte("flag provided but not defined: -engine\nUsage of supervisor:\n  -x\n"))
	if got, want := tl.LastError(), "-x"; got != want {
		t.Errorf("LastError() of a plain log = %q, want its last line %q", got, want)
	}
	if got := tl.ErrorLines(); got != "(none)" {
		t.Errorf("ErrorLines() of a plain log = %q, want (none)", got)
	}
	if got := (&Tail{}).LastError(); got != "(no log)" {
		t.Errorf("LastError() of nothing = %q, want (no log)", got)
	}
	tl = &Tail{}
	for i := range tailErrorLines + 5 {
		fmt.Fprintf(tl, `{"severity":"ERROR","message":"e%d"}`+"\n", i)
	}
	if n := strings.Count(tl.ErrorLines(), "\n") + 1; n != tailErrorLines {
		t.Errorf("kept %d error lines, want %d", n, tailErrorLines)
	}
}

func TestParseStat(t *testing.T) {
	line := "42 (a (weird) name) S 7 42 42 0 -1 4194560 100 0 0 0 11 22 0 0 20 0 1 0 12345 1000 10 18446744073709551615\n"
	f, err := parseStat([]byte(line))
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != "S" || f[1] != "7" || f[19] != "12345" {
		t.Errorf("parseStat = state %q ppid %q start %q, want S, 7, 12345", f[0], f[1], f[19])
	}
	for _, bad := range []string{"42 no name S 7", "42 (x) S 7 42"} {
		if _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) succeeded, want an error", bad)
		}
	}
}

// fakeProc writes a /proc with one stat file per process: pid -> ppid,
// start time and state.
func fakeProc(t *testing.T, procs map[int][3]string) string {
	dir := t.TempDir()
	for pid, p := range procs {
		d := filepath.Join(dir, strconv.Itoa(pid))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		stat := fmt.Sprintf("%d (p%d) %s %s 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 %s 0 0\n", pid, pid, p[2], p[0], p[1])
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(stat), 0o644); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(d, "comm"), []byte(fmt.Sprintf("p%d\n", pid)), 0o644)
	}
	os.Mkdir(filepath.Join(dir, "self"), 0o755) // not a pid: ignored
	return dir
}

func TestDescendantsAndAlive(t *testing.T) {
	// 10 -> 11 -> 12, 10 -> 13 (a zombie), 20 -> 21 (not 10's).
	proc := fakeProc(t, map[int][3]string{
		10: {"1", "100", "S"}, 11: {"10", "110", "S"}, 12: {"11", "120", "R"},
		13: {"10", "130", "Z"}, 20: {"1", "200", "S"}, 21: {"20", "210", "S"},
	})
	got := descendants(proc, 10)
	var pids []int
	for _, d := range got {
		pids = append(pids, d.pid)
	}
	if fmt.Sprint(pids) != "[11 13 12]" {
		t.Fatalf("descendants(10) = %v, want [11 13 12] (breadth first)", pids)
	}
	alive := map[int]bool{}
	for _, d := range got {
		alive[d.pid] = d.alive(proc)
	}
	if !alive[11] || !alive[12] || alive[13] {
		t.Errorf("alive = %v, want 11 and 12 alive, the zombie 13 not", alive)
	}
	if c := got[0].comm(proc); c != "p11" {
		t.Errorf("comm = %q, want p11", c)
	}
	// Process 12 exits and its pid is reused by a process started later.
	os.WriteFile(filepath.Join(proc, "12", "stat"), []byte("12 (new) S 1 0 0 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 999 0 0\n"), 0o644)
	if got[2].alive(proc) {
		t.Error("a recycled pid counts as the old process, want not alive")
	}
	os.RemoveAll(filepath.Join(proc, "11"))
	if got[0].alive(proc) {
		t.Error("a process whose /proc entry is gone counts as alive")
	}
}

func TestDescendantsOfThisProcess(t *testing.T) {
	// A shell child with a sleeping grandchild: both are found in the real
	// /proc, and neither once they are gone.
	cmd := exec.Command("sh", "-c", "sleep 30 & wait")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	// The grandchild is a forked sh until it has exec'd sleep: wait for
	// both to be there and the exec to be done.
	var got []procID
	var comms []string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		got = descendants("/proc", os.Getpid())
		comms = comms[:0]
		for _, d := range got {
			comms = append(comms, d.comm("/proc"))
		}
		if len(got) >= 2 && comms[1] == "sleep" {
			break
		}
	}
	if len(got) != 2 || comms[0] != "sh" || comms[1] != "sleep" {
		t.Fatalf("descendants of the test = %v (%v), want sh then sleep", got, comms)
	}
	exec.Command("kill", strconv.Itoa(got[1].pid)).Run()
	cmd.Wait()
	for _, d := range got {
		if d.alive("/proc") {
			t.Errorf("process %d alive after it was killed and reaped", d.pid)
		}
	}
}

func TestUnavailableError(t *testing.T) {
	var err error = fmt.Errorf("start: %w", &UnavailableError{Engine: "warm", Reason: `the supervisor runs the "cold" engine instead`})
	var u *UnavailableError
	if !errors.As(err, &u) || u.Engine != "warm" {
		t.Fatalf("errors.As(%v) = %v", err, u)
	}
	if got, want := u.Error(), `engine warm unavailable: the supervisor runs the "cold" engine instead`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestStartWithoutTheUsersFailsClearly(t *testing.T) {
	_, err := Start(t.Context(), Config{GatewayUser: "pyexec-no-such-user-x", SandboxUser: "nobody", Name: "pyexec-stack-test"})
	if err == nil || !strings.Contains(err.Error(), "pyexec-no-such-user-x") || !strings.Contains(err.Error(), "make setup") {
		t.Errorf("Start with an unknown user: %v, want an error naming it and make setup", err)
	}
}
