package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// usage is one process's resident memory and open file descriptors.
type usage struct {
	RSSKiB int64 `json:"rss_kib"`
	FDs    int   `json:"fds"`
}

func sample(pid int) (usage, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return usage{}, err
	}
	var u usage
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				u.RSSKiB, _ = strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return usage{}, err
	}
	u.FDs = len(fds)
	return u, nil
}
