package jail

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// mountinfoLine is a /proc/self/mountinfo line for a mount at point.
func mountinfoLine(point, fstype, superOpts string) string {
	return fmt.Sprintf("35 31 0:32 / %s rw,nosuid,nodev,noexec,relatime shared:9 - %s %s %s", point, fstype, fstype, superOpts)
}

func TestDetectCgroups(t *testing.T) {
	tests := []struct {
		name        string
		controllers string // root/cgroup.controllers; "" = no file
		mounts      []string
		wantMode    CgroupMode
		wantReason  string
		check       func(t *testing.T, c *Cgroups, root string)
	}{
		{
			name:        "v2",
			controllers: "cpuset cpu io memory hugetlb pids rdma misc\n",
			mounts:      []string{mountinfoLine("{root}", "cgroup2", "rw,nsdelegate,memory_recursiveprot")},
			wantMode:    CgroupV2,
			check: func(t *testing.T, c *Cgroups, root string) {
				if want := []string{"memory", "pids", "cpu"}; !slices.Equal(c.v2controllers, want) {
					t.Errorf("v2 controllers = %q, want %q", c.v2controllers, want)
				}
			},
		},
		{
			name:        "v2 without cpu",
			controllers: "memory pids\n",
			mounts:      []string{mountinfoLine("{root}", "cgroup2", "rw")},
			wantMode:    CgroupV2,
			check: func(t *testing.T, c *Cgroups, root string) {
				if want := []string{"memory", "pids"}; !slices.Equal(c.v2controllers, want) {
					t.Errorf("v2 controllers = %q, want %q", c.v2controllers, want)
				}
			},
		},
		{
			name:        "v2 without pids",
			controllers: "cpu io memory\n",
			mounts:      []string{mountinfoLine("{root}", "cgroup2", "rw")},
			wantMode:    CgroupNone,
			wantReason:  "want memory and pids",
		},
		{
			name:     "v2 without controllers file",
			mounts:   []string{mountinfoLine("{root}", "cgroup2", "rw")},
			wantMode: CgroupNone,
		},
		{
			// This development VM: v1 controllers plus an empty cgroup2 at
			// unified/.
			name: "hybrid",
			mounts: []string{
				"31 23 0:28 / {root} rw,relatime - tmpfs tmpfs rw,mode=755",
				mountinfoLine("{root}/cpu", "cgroup", "rw,cpu"),
				mountinfoLine("{root}/cpuacct", "cgroup", "rw,cpuacct"),
				mountinfoLine("{root}/memory", "cgroup", "rw,memory"),
				mountinfoLine("{root}/pids", "cgroup", "rw,pids"),
				mountinfoLine("{root}/unified", "cgroup2", "rw"),
			},
			wantMode: CgroupV1,
			check: func(t *testing.T, c *Cgroups, root string) {
				if c.memory != root+"/memory" || c.pids != root+"/pids" || c.cpu != root+"/cpu" {
					t.Errorf("v1 hierarchies = %q, %q, %q; want %s/{memory,pids,cpu}", c.memory, c.pids, c.cpu, root)
				}
			},
		},
		{
			name: "v1 co-mounted, escaped space",
			mounts: []string{
				mountinfoLine(`{root}/cpu,cpuacct`, "cgroup", "rw,cpu,cpuacct"),
				mountinfoLine(`{root}/mem\040ory,pids`, "cgroup", "rw,memory,pids"),
			},
			wantMode: CgroupV1,
			check: func(t *testing.T, c *Cgroups, root string) {
				if want := root + "/mem ory,pids"; c.memory != want || c.pids != want {
					t.Errorf("v1 memory, pids = %q, %q; want both %q", c.memory, c.pids, want)
				}
				if hs := c.v1Hierarchies(); len(hs) != 2 || hs[1] != root+"/cpu,cpuacct" {
					t.Errorf("v1Hierarchies() = %q, want memory and pids as one (co-mounted), then cpu", hs)
				}
			},
		},
		{
			name:       "v1 without pids",
			mounts:     []string{mountinfoLine("{root}/memory", "cgroup", "rw,memory")},
			wantMode:   CgroupNone,
			wantReason: "no cgroup v1 pids hierarchy",
		},
		{
			name:       "v1 without memory",
			mounts:     []string{mountinfoLine("{root}/pids", "cgroup", "rw,pids")},
			wantMode:   CgroupNone,
			wantReason: "no cgroup v1 memory hierarchy",
		},
		{
			name:       "elsewhere only",
			mounts:     []string{mountinfoLine("/elsewhere", "cgroup2", "rw"), mountinfoLine("/elsewhere/memory", "cgroup", "rw,memory")},
			wantMode:   CgroupNone,
			wantReason: "no cgroup2 with controllers",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.controllers != "" {
				if err := os.WriteFile(filepath.Join(root, "cgroup.controllers"), []byte(tt.controllers), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			info := strings.ReplaceAll(strings.Join(append([]string{
				"22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/vda rw",
			}, tt.mounts...), "\n")+"\n", "{root}", root)
			c, err := detectCgroups(root, []byte(info))
			if err != nil {
				t.Fatalf("detectCgroups(%s) error: %v", tt.name, err)
			}
			if c.Mode() != tt.wantMode {
				t.Fatalf("detectCgroups(%s).Mode() = %v (reason %q), want %v", tt.name, c.Mode(), c.Reason(), tt.wantMode)
			}
			if tt.wantMode == CgroupNone && !strings.Contains(c.Reason(), tt.wantReason) {
				t.Errorf("detectCgroups(%s).Reason() = %q, want it to contain %q", tt.name, c.Reason(), tt.wantReason)
			}
			if tt.wantMode != CgroupNone && c.Reason() != "" {
				t.Errorf("detectCgroups(%s).Reason() = %q, want empty", tt.name, c.Reason())
			}
			if tt.check != nil {
				tt.check(t, c, root)
			}
		})
	}
}

func TestDetectCgroupsErrors(t *testing.T) {
	if _, err := detectCgroups("relative", nil); err == nil {
		t.Error("detectCgroups(relative) = nil error, want one")
	}
	if _, err := detectCgroups("/sys/fs/cgroup", []byte("garbage line\n")); err == nil {
		t.Error("detectCgroups(garbage mountinfo) = nil error, want one")
	}
}

func TestDetectCgroupsHost(t *testing.T) {
	c, err := DetectCgroups("/sys/fs/cgroup")
	if err != nil {
		t.Fatalf("DetectCgroups: %v", err)
	}
	if c.Mode() == 0 {
		t.Fatal("DetectCgroups: mode 0")
	}
	t.Logf("host cgroups: %v %s (memory %q, pids %q, v2 controllers %q)",
		c.Mode(), c.Reason(), c.memory, c.pids, c.v2controllers)
}
