package jail

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
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

func detectCgroups(root string, mountinfo []byte) (*Cgroups, error) {
	if !filepath.IsAbs(root) {
		return nil, fmt.Errorf("detect cgroups: root %q: want an absolute path", root)
	}
	root = filepath.Clean(root)
	c := &Cgroups{root: root}
	mounts, err := parseMountinfo(mountinfo)
	if err != nil {
		return nil, fmt.Errorf("detect cgroups: %w", err)
	}
	var v2at bool
	for _, m := range mounts {
		if m.point != root && !strings.HasPrefix(m.point, root+"/") {
			continue
		}
		switch m.fstype {
		case "cgroup2":
			if m.point == root {
				v2at = true
			}
		case "cgroup":
			for _, opt := range strings.Split(m.superOpts, ",") {
				switch opt {
				case "memory":
					c.memory = m.point
				case "pids":
					c.pids = m.point
				case "cpu":
					c.cpu = m.point
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

type mountInfo struct{ point, fstype, superOpts string }

// parseMountinfo reads the fields it needs from /proc/self/mountinfo lines:
// "id parent maj:min root point opts [optional...] - fstype source superopts".
func parseMountinfo(b []byte) ([]mountInfo, error) {
	var out []mountInfo
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		sep := slices.Index(f, "-")
		if len(f) < 5 || sep < 6 || len(f) < sep+4 {
			return nil, fmt.Errorf("parse mountinfo line %q", sc.Text())
		}
		out = append(out, mountInfo{point: unescapeMountinfo(f[4]), fstype: f[sep+1], superOpts: f[sep+3]})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("parse mountinfo: %w", err)
	}
	return out, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Mode reports the detected interface.
func (c *Cgroups) Mode() CgroupMode { return c.mode }

// Reason says why the mode is CgroupNone; it is empty otherwise.
func (c *Cgroups) Reason() string { return c.reason }
