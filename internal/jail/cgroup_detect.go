package jail

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// DetectCgroups finds which cgroup interface is usable under root (usually
// "/sys/fs/cgroup") by reading /proc/self/mountinfo and the controllers
// files. v2 means a cgroup2 filesystem mounted at root whose
// cgroup.controllers lists memory and pids; v1 means memory and pids
// hierarchies mounted under root (the hybrid layout, with an empty cgroup2
// at root/unified, is v1). Anything else gives CgroupNone with a Reason.
// It fails only when mountinfo cannot be read.
func DetectCgroups(root string) (*Cgroups, error) {
	info, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	return detectCgroups(root, info)
}

func detectCgroups(root string, info []byte) (*Cgroups, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("detect cgroups: root %q: want an absolute path", root)
	}
	root = filepath.Clean(root)
	c := &Cgroups{root: root}
	// Only mounts at or under root; the parser undoes the kernel's octal
	// escapes in mount points (\040 for a space).
	mounts, err := mountinfo.GetMountsFromReader(bytes.NewReader(info), mountinfo.PrefixFilter(root))
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: parse mountinfo: %w", err)
	}
	var v2at bool
	for _, m := range mounts {
		switch m.FSType {
		case "cgroup2":
			if m.Mountpoint == root {
				v2at = true
			}
		case "cgroup":
			for _, opt := range strings.Split(m.VFSOptions, ",") {
				switch opt {
				case "memory":
					c.memory = m.Mountpoint
				case "pids":
					c.pids = m.Mountpoint
				case "cpu":
					c.cpu = m.Mountpoint
				}
			}
		}
	}
	if v2at {
		avail, err := os.ReadFile(filepath.Join(root, "cgroup.controllers"))
		if err != nil {
			c.mode, c.reason = CgroupNone, fmt.Sprintf("cgroup2 at %s: %v", root, err)
			return c, nil
		}
		have := strings.Fields(string(avail))
		if !slices.Contains(have, "memory") || !slices.Contains(have, "pids") {
			c.mode = CgroupNone
			c.reason = fmt.Sprintf("cgroup2 at %s offers controllers %q, want memory and pids", root, have)
			return c, nil
		}
		c.mode = CgroupV2
		c.v2controllers = []string{"memory", "pids"}
		// cpu only adds fair sharing between executions; cpu.stat's usage
		// is there without it.
		if slices.Contains(have, "cpu") {
			c.v2controllers = append(c.v2controllers, "cpu")
		}
		return c, nil
	}
	switch {
	case c.memory == "" && c.pids == "":
		c.mode = CgroupNone
		c.reason = fmt.Sprintf("no cgroup2 with controllers at %s and no cgroup v1 memory or pids hierarchy under it", root)
	case c.memory == "":
		c.mode, c.reason = CgroupNone, fmt.Sprintf("no cgroup v1 memory hierarchy under %s", root)
	case c.pids == "":
		c.mode, c.reason = CgroupNone, fmt.Sprintf("no cgroup v1 pids hierarchy under %s", root)
	default:
		c.mode = CgroupV1
	}
	return c, nil
}

// Mode reports the detected interface.
func (c *Cgroups) Mode() CgroupMode { return c.mode }

// Reason says why the mode is CgroupNone; it is empty otherwise.
func (c *Cgroups) Reason() string { return c.reason }
