package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/sirupsen/logrus"
)

// selfTestScript reports, from inside a real jail, the facts the isolation
// rests on. It runs at start-up so a host that silently drops a namespace or
// a mount is caught before any user script runs.
const selfTestScript = `
import os, socket

def main():
    try:
        ifaces = sorted(name for _, name in socket.if_nameindex())
    except OSError:
        ifaces = []
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "pid": os.getpid(),
        "hostname": socket.gethostname(),
        "ifaces": ifaces,
        "cwd": os.getcwd(),
        "root": sorted(os.listdir("/")),
        "environ": sorted(os.environ),
    }
`

// SelfTest runs the real jail once and fails when isolation did not take.
func SelfTest(ctx context.Context, engine Engine, host *Host, log *logrus.Entry) error {
	lim := DefaultLimits()
	lim.Timeout = 20 * time.Second
	out := engine.Run(ctx, &Execution{ID: "selftest", Script: selfTestScript, Limits: lim, Log: log.WithField("execution_id", "selftest")})
	if out.Err != nil {
		return fmt.Errorf("probe failed: %s: %s", out.Err.Type, out.Err.Message)
	}
	var got struct {
		UID, GID, PID int
		Hostname      string
		Ifaces        []string
		Cwd           string
		Root          []string
		Environ       []string
	}
	if err := json.Unmarshal(out.Result, &got); err != nil {
		return fmt.Errorf("probe result: %w", err)
	}
	var problems []string
	check := func(ok bool, what string, args ...any) {
		if !ok {
			problems = append(problems, fmt.Sprintf(what, args...))
		}
	}
	check(got.UID == 65534 && got.GID == 65534, "jail runs as %d:%d, want 65534:65534", got.UID, got.GID)
	check(got.PID == 1, "runner is pid %d, want 1 (no PID namespace?)", got.PID)
	check(got.Hostname == "sandbox", "hostname %q (no UTS namespace?)", got.Hostname)
	check(len(got.Ifaces) <= 1 && (len(got.Ifaces) == 0 || got.Ifaces[0] == "lo"), "network interfaces %v (no network namespace?)", got.Ifaces)
	check(got.Cwd == "/tmp", "cwd %q, want /tmp", got.Cwd)
	for _, e := range got.Environ {
		check(e != "PYEXEC_PRIVATE_MOUNTNS" && e != "USER" && e != "SUDO_USER", "supervisor variable %s leaked into the jail", e)
	}
	if len(problems) > 0 {
		return fmt.Errorf("isolation missing: %v", problems)
	}
	log.WithFields(logrus.Fields{"duration_ms": out.Done.WallMS, "root": got.Root}).Info("self-test passed")
	return nil
}
