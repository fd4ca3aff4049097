package engine

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ownerHelperEnv makes the test binary run ownerHelper instead of the tests:
// its value is the pid of a process of another uid.
const ownerHelperEnv = "PYEXEC_OWNERFS_HELPER"

func TestMain(m *testing.M) {
	if pid := os.Getenv(ownerHelperEnv); pid != "" {
		os.Exit(ownerHelper(pid))
	}
	os.Exit(m.Run())
}

// ownerHelper runs with Docker's default capabilities, without
// CAP_SYS_PTRACE: smaps_rollup of another uid's
// process is refused to a plain open, opened under its owner's ids, and
// every thread's fs ids are back to 0 afterwards.
func ownerHelper(pidText string) int {
	pid, _ := strconv.Atoi(pidText)
	name := "/proc/" + pidText + "/smaps_rollup"
	if f, err := os.Open(name); !errors.Is(err, fs.ErrPermission) {
		os.Stderr.WriteString("a plain open was not refused (CAP_SYS_PTRACE still there?): " + errText(err) + "\n")
		if f != nil {
			f.Close()
		}
		return 1
	}
	for range 50 {
		f, err := openAsOwner(pid, name)
		if err != nil {
			os.Stderr.WriteString("openAsOwner: " + err.Error() + "\n")
			return 1
		}
		b, _ := io.ReadAll(f)
		f.Close()
		if !bytes.Contains(b, []byte("\nPss:")) {
			os.Stderr.WriteString("no Pss line in " + string(b) + "\n")
			return 1
		}
	}
	if n := pssBytes(pid); n <= 0 {
		os.Stderr.WriteString("pssBytes " + strconv.FormatInt(n, 10) + "\n")
		return 1
	}
	tasks, _ := filepath.Glob("/proc/self/task/*/status")
	for _, task := range tasks {
		b, err := os.ReadFile(task)
		if err != nil {
			continue // a thread that ended meanwhile
		}
		for _, key := range []string{"\nUid:", "\nGid:"} {
			i := bytes.Index(b, []byte(key))
			line, _, _ := bytes.Cut(b[i+len(key):], []byte("\n"))
			if f := strings.Fields(string(line)); len(f) != 4 || f[3] != "0" {
				os.Stderr.WriteString(task + ": fs id left changed:" + string(line) + "\n")
				return 1
			}
		}
	}
	return 0
}

func errText(err error) string {
	if err == nil {
		return "no error"
	}
	return err.Error()
}

// The memory watch reads a process's proportional set size where the
// supervisor lacks CAP_SYS_PTRACE (Docker's default capabilities), by
// opening smaps_rollup under the process's own ids: without it, pages a
// forked child shares with its parent count once per process, and a fork
// bomb of small processes looks like a memory bomb.
func TestOpenAsOwnerWithoutPtrace(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root (setfsuid, another uid's process)")
		}
		t.Skip("needs root")
	}
	for _, tool := range []string{"setpriv", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	target := exec.Command("setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", "sleep", "60")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { target.Process.Kill(); target.Wait() }()
	// Until setpriv has become sleep under uid 65534.
	pid := target.Process.Pid
	for deadline := time.Now().Add(10 * time.Second); ; {
		if uid, _, err := ownerIDs(pid); err == nil && uid == 65534 {
			if exe, _ := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe"); strings.HasSuffix(exe, "/sleep") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the target never ran as uid 65534")
		}
		time.Sleep(10 * time.Millisecond)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	// Docker's default capabilities (as gateway/e2e's dockerDefaultCaps):
	// dropping CAP_SYS_PTRACE alone is not enough on every kernel.
	helper := exec.Command("setpriv", "--bounding-set",
		"-all,+chown,+dac_override,+fowner,+fsetid,+kill,+setgid,+setuid,+setpcap,+net_bind_service,+net_raw,+sys_chroot,+mknod,+audit_write,+setfcap",
		"--inh-caps", "-all", "--", self)
	helper.Env = append(os.Environ(), ownerHelperEnv+"="+strconv.Itoa(pid))
	if out, err := helper.CombinedOutput(); err != nil {
		t.Fatalf("helper without CAP_SYS_PTRACE: %v\n%s", err, out)
	}
	// A root process is never opened so.
	if _, err := openAsOwner(os.Getpid(), "/proc/self/smaps_rollup"); err == nil {
		t.Fatal("openAsOwner opened a root process's file")
	}
}
