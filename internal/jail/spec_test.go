package jail

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// configValues returns the top-level "key: value" lines of a rendered
// config, the last value of each key.
func configValues(cfg []byte) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(string(cfg), "\n") {
		if k, v, ok := strings.Cut(line, ": "); ok && !strings.HasPrefix(k, " ") {
			m[k] = v
		}
	}
	return m
}

// What a warm child applies itself is exactly what the cold jail of the
// same policy gets from nsjail: the rlimits set to a value and the fresh
// mounts, parents first (by depth, then name), with the same values,
// options and flags.
func TestChildLimitsMatchTheColdConfig(t *testing.T) {
	cgroup := &Placement{Mode: CgroupV2, Dir: "/sys/fs/cgroup/python-executor/e-42", MemoryMax: 513 << 20, PidsMax: 65}
	for _, withCgroup := range []bool{false, true} {
		t.Run(fmt.Sprint("cgroup=", withCgroup), func(t *testing.T) {
			p := goldenPolicy()
			p.Mounts = append(p.Mounts, Mount{Kind: Tmpfs, Dst: "/scratch", RW: true, Options: "size=1048576"})
			p.Limits.MemoryBytes = 100<<20 + 1
			if withCgroup {
				p.Cgroup = cgroup
			}
			cfg, err := Render(p)
			if err != nil {
				t.Fatal(err)
			}
			values := configValues(cfg)
			spec, err := ChildSpec(p, p.Limits, withCgroup)
			if err != nil {
				t.Fatal(err)
			}
			child := spec.ChildLimits()
			units := map[string]uint64{"as": mib, "core": mib, "fsize": mib, "stack": mib}
			got := map[string]string{}
			for _, r := range child.Rlimits {
				unit := max(units[r.Name], 1)
				if r.Value%unit != 0 {
					t.Errorf("rlimit %s = %d: not a whole nsjail unit", r.Name, r.Value)
				}
				got[r.Name] = strconv.FormatUint(r.Value/unit, 10)
			}
			want := map[string]string{}
			for _, name := range []string{"as", "core", "cpu", "fsize", "nofile", "nproc", "stack"} {
				if values["rlimit_"+name+"_type"] == "VALUE" {
					want[name] = values["rlimit_"+name]
				}
			}
			if !maps.Equal(got, want) {
				t.Errorf("child rlimits %v, cold config's %v", got, want)
			}
			var mounts []string
			for _, m := range child.Mounts {
				mounts = append(mounts, fmt.Sprintf("%s %s %s %#x", m.FSType, m.Target, m.Data, m.Flags))
			}
			wantMounts := []string{
				"proc /proc  " + fmt.Sprintf("%#x", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC),
				// A policy's tmpfs is noexec like /tmp.
				"tmpfs /scratch size=1048576 " + fmt.Sprintf("%#x", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC),
				"tmpfs /tmp size=67108864,nr_inodes=4096,mode=1777 " + fmt.Sprintf("%#x", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC),
				"tmpfs /dev/shm size=67108864,nr_inodes=256,mode=1777 " + fmt.Sprintf("%#x", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC),
			}
			if !slices.Equal(mounts, wantMounts) {
				t.Errorf("child mounts\n%q, want\n%q", mounts, wantMounts)
			}
			for _, m := range child.Mounts {
				if !bytes.Contains(cfg, []byte(fmt.Sprintf("dst: %q", m.Target))) {
					t.Errorf("child mount %s is not in the cold config", m.Target)
				}
			}
		})
	}
}

// The per-zygote part carries the policy's environment and the jail's fixed
// properties, and the BPF form of the strict seccomp policy.
func TestChildSetup(t *testing.T) {
	p := goldenPolicy()
	p.Seccomp = true
	spec, err := ChildSpec(p, p.Limits, true)
	if err != nil {
		t.Fatal(err)
	}
	setup, err := spec.ChildSetup()
	if err != nil {
		t.Fatal(err)
	}
	filter, err := SeccompFilter()
	if err != nil {
		t.Fatal(err)
	}
	all := uint64(unix.CLONE_NEWUSER | unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS | unix.CLONE_NEWCGROUP)
	if setup.Namespaces != all || setup.UID != jailUID || setup.GID != jailUID || setup.Hostname != jailHostname ||
		setup.Cwd != jailCwd || !slices.Equal(setup.Env, p.Env) || setup.KeepCaps || !setup.NoNewPrivs || !bytes.Equal(setup.Seccomp, filter) {
		t.Errorf("ChildSetup = %+v", setup)
	}
	p.Seccomp = false
	spec, _ = ChildSpec(p, p.Limits, true)
	if setup, err := spec.ChildSetup(); err != nil || setup.Seccomp != nil {
		t.Errorf("without seccomp: %v, filter %d bytes", err, len(setup.Seccomp))
	}
	// The zygote template's own flags do not reach its children.
	p.Zygote = true
	spec, _ = ChildSpec(p, p.Limits, true)
	if spec.TimeLimit == 0 || spec.Mounts[0].Dst != "/" {
		t.Errorf("child spec of a zygote template: %+v", spec)
	}
	if _, err := ChildSpec(containerPolicy("/usr/bin/python3", "/tmp/w/1"), goldenLimits, false); err == nil {
		t.Error("the container tier's policy gave a child spec")
	}
}

// One Spec serves every tier: the container tier's is the full one without
// namespaces, mounts, hostname or loopback rule.
func TestDescribeContainerTier(t *testing.T) {
	s, err := Describe(containerPolicy("/usr/bin/python3", "/tmp/w/exec-1"))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Namespaces) != 0 || len(s.Mounts) != 0 || s.Hostname != "" || s.NoLoopback || s.Cwd != "/tmp/w/exec-1" ||
		s.UID != (IDMap{61999, 61999}) || s.Seccomp != SeccompContainer || !s.NoNewPrivs || s.KeepCaps {
		t.Errorf("container spec = %+v", s)
	}
	full, err := Describe(goldenPolicy())
	if err != nil {
		t.Fatal(err)
	}
	if len(full.Namespaces) != 7 || full.Hostname != jailHostname || !full.NoLoopback || full.UID != (IDMap{jailUID, 995}) || full.GID != (IDMap{jailUID, 994}) {
		t.Errorf("full spec = %+v", full)
	}
}

// The cgroup section is derived once, from the limits, and is the same for
// the cold engine's jail (DescribeWithCgroup, then Render with the
// placement) and a warm engine's child (ChildSpec); a change of a limit
// reaches both. Without a cgroup it is zero.
func TestSpecCgroupSection(t *testing.T) {
	p := goldenPolicy()
	p.Limits.MemoryBytes = 300 << 20
	p.Limits.Pids = 17
	cold, err := DescribeWithCgroup(p)
	if err != nil {
		t.Fatal(err)
	}
	want := CgroupLimits{MemoryBytes: 300 << 20, SwapBytes: 0, Pids: 17, CPUShares: 1024, CPUWeight: 100, OOMGroup: true}
	if cold.Cgroup != want {
		t.Errorf("DescribeWithCgroup: Cgroup = %+v, want %+v", cold.Cgroup, want)
	}
	warm, err := ChildSpec(p, p.Limits, true)
	if err != nil {
		t.Fatal(err)
	}
	if warm.Cgroup != want {
		t.Errorf("ChildSpec: Cgroup = %+v, want %+v", warm.Cgroup, want)
	}
	// Once the cgroup is created from the section and placed, Render
	// describes the same Spec.
	c, _ := fakeV2(t)
	if err := c.Setup("python-executor"); err != nil {
		t.Fatal(err)
	}
	e, err := c.NewExec("e-section", cold.Cgroup)
	if err != nil {
		t.Fatal(err)
	}
	p.Cgroup = e.Placement()
	placed, err := Describe(p)
	if err != nil {
		t.Fatal(err)
	}
	if placed.Cgroup != want {
		t.Errorf("Describe with the placement: Cgroup = %+v, want %+v", placed.Cgroup, want)
	}
	if p.Cgroup.MemoryMax != want.MemoryBytes+mib || p.Cgroup.PidsMax != want.Pids+1 {
		t.Errorf("placement %+v: want nsjail's limits just above %+v", p.Cgroup, want)
	}

	for name, s := range map[string]func() (Spec, error){
		"container tier": func() (Spec, error) {
			return DescribeWithCgroup(containerPolicy("/usr/bin/python3", "/tmp/w/exec-1"))
		},
		"no placement":     func() (Spec, error) { return Describe(goldenPolicy()) },
		"child, no cgroup": func() (Spec, error) { return ChildSpec(goldenPolicy(), goldenLimits, false) },
	} {
		spec, err := s()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !spec.Cgroup.IsZero() {
			t.Errorf("%s: Cgroup = %+v, want zero", name, spec.Cgroup)
		}
	}
}

// NewExec writes the section it is given, not values of its own.
func TestNewExecWritesTheSection(t *testing.T) {
	c, root := fakeV2(t)
	if err := c.Setup("python-executor"); err != nil {
		t.Fatal(err)
	}
	dir := root + "/python-executor/e-custom"
	l := CgroupLimits{MemoryBytes: 7 << 20, SwapBytes: 1 << 20, Pids: 9, CPUShares: 512, CPUWeight: 50, OOMGroup: false}
	if _, err := c.NewExec("e-custom", l); err != nil {
		t.Fatal(err)
	}
	for file, want := range map[string]string{"memory.max": "7340032", "memory.swap.max": "1048576", "pids.max": "9"} {
		if got := readFile(t, dir+"/"+file); got != want {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if _, err := os.Stat(dir + "/memory.oom.group"); err == nil {
		t.Errorf("memory.oom.group written (%q) with OOMGroup false", readFile(t, dir+"/memory.oom.group"))
	}
	for _, bad := range []CgroupLimits{{}, {MemoryBytes: 1, Pids: 1, CPUShares: 1, CPUWeight: 1, SwapBytes: -1}, {MemoryBytes: 1, Pids: 1}} {
		if _, err := c.NewExec("e-bad", bad); err == nil {
			t.Errorf("NewExec(%+v) = nil error, want one", bad)
		}
	}
}
