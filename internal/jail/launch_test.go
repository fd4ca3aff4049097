package jail

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestLaunch starts a stand-in for nsjail that prints the config it is
// given, a line it reads from its fd 3 and the size of its environment: the
// config reaches the named fd, the other files keep their places, and the
// process gets its own group, an empty environment and a live pidfd.
func TestLaunch(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "nsjail")
	script := "#!/bin/sh\n" +
		`[ "$1" = --config ] || exit 2` + "\n" +
		`cat "$2"; read -r line <&3; echo "fd3:$line"; echo "env:$(env | grep -v -e '^PWD=' -e '^SHLVL=' -e '^_=' | wc -l)"` + "\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	passR, passW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer passR.Close()
	defer passW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer outR.Close()
	started := false
	cmd, pidfd, err := Launch{
		Nsjail: fake, Config: []byte("name: \"x\"\n"), ConfigFD: 4,
		Files:  []*os.File{passR, nil},
		Stdout: outW,
	}.Start(func(c *exec.Cmd) error { started = true; return c.Start() })
	outW.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pidfd)
	if !started {
		t.Error("the start function was not used")
	}
	if err := unix.PidfdSendSignal(pidfd, 0, nil, 0); err != nil {
		t.Errorf("pidfd does not reach the process: %v", err)
	}
	if pgid, err := syscall.Getpgid(cmd.Process.Pid); err != nil || pgid != cmd.Process.Pid {
		t.Errorf("process group %d (%v), want its own, %d", pgid, err, cmd.Process.Pid)
	}
	if cmd.SysProcAttr.Pdeathsig != syscall.SIGKILL {
		t.Errorf("parent-death signal %v, want SIGKILL", cmd.SysProcAttr.Pdeathsig)
	}
	passW.WriteString("passed\n")
	var out bytes.Buffer
	out.ReadFrom(outR)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stand-in nsjail: %v; output %q", err, out.String())
	}
	if want := "name: \"x\"\nfd3:passed\nenv:0\n"; out.String() != want {
		t.Errorf("output %q, want %q", out.String(), want)
	}
}

func TestLaunchRejectsConfigFD(t *testing.T) {
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, l := range []Launch{
		{Nsjail: "/bin/true", ConfigFD: 2, Files: []*os.File{nil}},
		{Nsjail: "/bin/true", ConfigFD: 4, Files: []*os.File{nil}},
		{Nsjail: "/bin/true", ConfigFD: 3, Files: []*os.File{f}},
	} {
		if _, _, err := l.Start(nil); err == nil || !strings.Contains(err.Error(), "config fd") {
			t.Errorf("Launch{ConfigFD: %d, %d files}.Start: %v, want a config fd error", l.ConfigFD, len(l.Files), err)
		}
	}
}
