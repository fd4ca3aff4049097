package jail

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestCgroupsV2SetupUnwritable(t *testing.T) {
	// Setup must name the cgroup whose subtree_control it cannot use (on a
	// real host: EBUSY, when it holds processes).
	c, root := fakeV2(t)
	c.create = false
	if err := os.Mkdir(filepath.Join(root, "busy"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A directory where the file should be makes the write fail; EBUSY
	// itself cannot be faked, so check the generic path names the file.
	if err := os.Mkdir(filepath.Join(root, "busy", "cgroup.subtree_control"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "cgroup.subtree_control"), "memory pids cpu")
	err := c.Setup("busy/python-executor")
	if err == nil || !strings.Contains(err.Error(), "busy") {
		t.Errorf("Setup(busy/python-executor) = %v, want an error naming the cgroup", err)
	}
}

// Inside a container on cgroup v2, the namespace root holds the container's
// processes and refuses to delegate controllers (EBUSY) until they move to a
// leaf; Setup moves them and carries on.
func TestCgroupsV2ContainerRootEvacuated(t *testing.T) {
	c, root := fakeV2(t)
	write(t, filepath.Join(root, "cgroup.procs"), "1\n17\n42\n")
	var moved []string
	c.writeFault = func(path, value string) error {
		switch path {
		case filepath.Join(root, "cgroup.subtree_control"):
			if len(moved) < 3 {
				return &os.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
			}
		case filepath.Join(root, EvacuationLeaf, "cgroup.procs"):
			moved = append(moved, value)
		}
		return nil
	}
	if err := c.Setup("python-executor"); err != nil {
		t.Fatalf("Setup in a container root = %v, want the processes moved and nil", err)
	}
	if got := strings.Join(moved, ","); got != "1,17,42" {
		t.Fatalf("moved pids %q to the leaf, want 1,17,42", got)
	}
	if got := readFile(t, filepath.Join(root, "cgroup.subtree_control")); !strings.Contains(got, "+memory") || !strings.Contains(got, "+pids") {
		t.Fatalf("root subtree_control = %q, want memory and pids enabled after the move", got)
	}
}

// A busy cgroup that is not the root is not ours to empty: Setup names it.
func TestCgroupsV2BusyAncestorNotEvacuated(t *testing.T) {
	c, root := fakeV2(t)
	c.selfCgroup = "0::/elsewhere\n"
	c.writeFault = func(path, value string) error {
		if path == filepath.Join(root, "shared", "cgroup.subtree_control") {
			return &os.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
		}
		return nil
	}
	err := c.Setup("shared/python-executor")
	if err == nil || !strings.Contains(err.Error(), "holds processes") {
		t.Fatalf("Setup under a busy ancestor = %v, want an error naming it", err)
	}
	if _, err := os.Stat(filepath.Join(root, "shared", EvacuationLeaf)); err == nil {
		t.Fatal("Setup emptied a cgroup that is not the namespace root")
	}
}

// A supervisor inside a systemd unit with Delegate=yes, its parent cgroup
// placed under the unit's own: the unit's cgroup holds the supervisor (and
// its siblings), so they move to a leaf and the controllers go on down.
func TestCgroupsV2OwnCgroupEvacuated(t *testing.T) {
	c, root := fakeV2(t)
	unit := filepath.Join(root, "system.slice", "pyexec.service")
	if err := os.MkdirAll(unit, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(unit, "cgroup.procs"), "300\n301\n")
	c.selfCgroup = "0::/system.slice/pyexec.service\n"
	var moved []string
	c.writeFault = func(path, value string) error {
		switch path {
		case filepath.Join(unit, "cgroup.subtree_control"):
			if len(moved) < 2 {
				return &os.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
			}
		case filepath.Join(unit, EvacuationLeaf, "cgroup.procs"):
			moved = append(moved, value)
		}
		return nil
	}
	if err := c.Setup("system.slice/pyexec.service/executions"); err != nil {
		t.Fatalf("Setup under the supervisor's own busy cgroup = %v, want its processes moved and nil", err)
	}
	if got := strings.Join(moved, ","); got != "300,301" {
		t.Fatalf("moved pids %q to the leaf, want 300,301", got)
	}
	if _, err := os.Stat(filepath.Join(root, EvacuationLeaf)); err == nil {
		t.Error("Setup made a leaf at the root, which was not busy")
	}
}

// A process forked into the busy root while the others were being moved
// keeps it busy: Setup moves again until the controllers can be enabled.
func TestCgroupsV2EvacuationRetries(t *testing.T) {
	c, root := fakeV2(t)
	procs := filepath.Join(root, "cgroup.procs")
	write(t, procs, "1\n")
	var moved []string
	rounds := 0
	c.writeFault = func(path, value string) error {
		switch path {
		case filepath.Join(root, "cgroup.subtree_control"):
			rounds++
			if rounds == 2 {
				// A latecomer, forked during the first round.
				write(t, procs, "99\n")
			}
			if rounds <= 2 {
				return &os.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
			}
		case filepath.Join(root, EvacuationLeaf, "cgroup.procs"):
			moved = append(moved, value)
		}
		return nil
	}
	if err := c.Setup("python-executor"); err != nil {
		t.Fatalf("Setup with a latecomer in the root = %v, want it moved too and nil", err)
	}
	if got := strings.Join(moved, ","); got != "1,99" {
		t.Fatalf("moved pids %q, want 1,99", got)
	}
}
