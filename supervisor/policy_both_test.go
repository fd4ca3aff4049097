package supervisor

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"

	warmengine "github.com/python-executor/python-executor/internal/engine/warm"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// The isolation policy is one description (jail.Spec) that both engines
// enforce: the cold engine through the nsjail config rendered from it, the
// warm engine through its zygote's jail rendered from it and the parts its
// children apply from the init message and each order. This test changes
// the policy in three places, an environment variable, a read-only bind
// and a small tmpfs (a per-execution mount, which a warm child makes from
// its order), and sees every change in both engines' jails, real nsjail and
// real zygote; and it sees both jails equal where the policy decides
// (environment, rlimits, the topmost mount at each mount point). The
// cgroup limits (jail.Spec's Cgroup section) are changed too, through the
// execution's memory and pids limits: the helper reads them from the
// execution's cgroup while its script waits.

// policyHelperEnv makes the test binary the helper below (a supervisor of
// its own, which needs a private mount namespace); its value is the
// helper's JSON config.
const policyHelperEnv = "PYEXEC_POLICY_BOTH_HELPER"

type policyHelperConfig struct {
	Root      string // the checkout (venv, runner)
	RunDir    string // stage directory and the bind's source live here
	CgParent  string
	ProbeDir  string // bound read-only at policyProbeDst
	ProbeWord string // the environment variable's value
}

// The execution's memory and pids limits the probes run with: not the
// defaults, so that the cgroup values read show they came from them.
const (
	policyMemoryBytes = 320 << 20
	policyPids        = 23
)

const (
	policyProbeDst   = "/opt/policy-probe"
	policyScratchDst = "/scratch"
	policyProbeVar   = "POLICY_PROBE"
)

// policyProbeScript reports what of the policy's change it sees, and what
// the policy decides: environment, rlimits, mounts.
const policyProbeScript = `
import os, resource, time

def attempt(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return "errno %d" % e.errno

def write(path, n):
    with open(path, "wb") as f:
        f.write(b"x" * n)

def main():
    out = {"probe_env": os.environ.get("POLICY_PROBE", "")}
    # The helper reads this execution's cgroup from outside, then says so
    # by creating "go" in the bound directory.
    gate = "timeout"
    for _ in range(400):
        if os.path.exists("/opt/policy-probe/go"):
            gate = "go"
            break
        time.sleep(0.05)
    out["gate"] = gate
    try:
        out["marker"] = open("/opt/policy-probe/marker").read()
    except OSError as e:
        out["marker"] = "errno %d" % e.errno
    out["marker_write"] = attempt(lambda: open("/opt/policy-probe/marker", "w").close())
    out["scratch_before"] = sorted(os.listdir("/scratch")) if os.path.isdir("/scratch") else None
    out["scratch_small"] = attempt(lambda: write("/scratch/mine", 4096))
    out["scratch_big"] = attempt(lambda: write("/scratch/big", 2 << 20))
    out["env"] = sorted("%s=%s" % kv for kv in os.environ.items())
    out["rlimits"] = {n: list(resource.getrlimit(getattr(resource, "RLIMIT_" + n)))
                      for n in ("AS", "CORE", "CPU", "FSIZE", "NOFILE", "NPROC", "STACK", "DATA", "MEMLOCK", "MSGQUEUE", "SIGPENDING")}
    top = {}
    for line in open("/proc/self/mountinfo"):
        f = line.split()
        sep = f.index("-")
        top[f[4]] = " ".join((f[5], f[sep + 1], f[sep + 3] if len(f) > sep + 3 else ""))
    out["mounts"] = top
    return out
`

type policyProbe struct {
	ProbeEnv      string            `json:"probe_env"`
	Gate          string            `json:"gate"`
	Cgroup        map[string]string `json:"cgroup"` // added by the helper: file -> value
	Marker        string            `json:"marker"`
	MarkerWrite   string            `json:"marker_write"`
	ScratchBefore []string          `json:"scratch_before"`
	ScratchSmall  string            `json:"scratch_small"`
	ScratchBig    string            `json:"scratch_big"`
	Env           []string          `json:"env"`
	Rlimits       map[string][]int  `json:"rlimits"`
	Mounts        map[string]string `json:"mounts"`
}

func init() {
	if c := os.Getenv(policyHelperEnv); c != "" {
		os.Exit(policyHelper(c))
	}
}

// policyHelper prepares a host, changes its policy, and runs the probe
// twice in each engine; it prints {"cold": [...], "warm": [...]}.
func policyHelper(config string) int {
	log := logrus.New()
	log.SetOutput(os.Stderr)
	log.SetLevel(logrus.WarnLevel)
	fail := func(err error) int { log.WithError(err).Error("policy helper"); return 1 }
	if err := EnterPrivateMountNamespace(); err != nil {
		return fail(err)
	}
	var hc policyHelperConfig
	if err := json.Unmarshal([]byte(config), &hc); err != nil {
		return fail(err)
	}
	u, err := user.Lookup("pyexec-sandbox")
	if err != nil {
		return fail(err)
	}
	cfg := Config{
		Venv: filepath.Join(hc.Root, ".venv"), RunnerPath: filepath.Join(hc.Root, "runner", "runner.py"),
		StageDir: filepath.Join(hc.RunDir, "stage"), CgroupParent: hc.CgParent,
		Zygotes: 1, Slots: 1, Preload: []string{},
	}
	cfg.SandboxUID, _ = strconv.Atoi(u.Uid)
	cfg.SandboxGID, _ = strconv.Atoi(u.Gid)
	cfg.applyDefaults()
	entry := log.WithField("test", "policy")
	host, err := PrepareHost(cfg, entry)
	if err != nil {
		return fail(err)
	}
	defer host.Close()
	// The change: one entry of each kind.
	host.Policy.Env = append(slices.Clone(host.Policy.Env), policyProbeVar+"="+hc.ProbeWord)
	host.Policy.Mounts = append(slices.Clone(host.Policy.Mounts),
		jail.Mount{Kind: jail.Bind, Src: hc.ProbeDir, Dst: policyProbeDst},
		jail.Mount{Kind: jail.Tmpfs, Dst: policyScratchDst, RW: true, Options: "size=1048576,nr_inodes=64,mode=1777"})

	r, err := proc.NewReaper()
	if err != nil {
		return fail(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go r.Run(stop)
	results := map[string][]json.RawMessage{}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	for _, name := range []string{EngineCold, EngineWarm} {
		cfg.Engine = name
		// startEngine runs the self-test too: it must pass on the changed
		// policy.
		engine, _, err := startEngine(ctx, cfg, host, r, entry)
		if err != nil {
			return fail(fmt.Errorf("%s: %w", name, err))
		}
		if engine.Name() != name {
			return fail(fmt.Errorf("started engine %s, want %s", engine.Name(), name))
		}
		for i := range 2 {
			lim := DefaultLimits()
			lim.OpenFiles = 77 // not the default: the limits reach both alike
			lim.MemoryBytes, lim.Pids = policyMemoryBytes, policyPids
			id := fmt.Sprintf("policy-%s-%d", name, i)
			gate := filepath.Join(hc.ProbeDir, "go")
			os.Remove(gate)
			read := make(chan map[string]string, 1)
			go func() { read <- readExecCgroup(ctx, hc.CgParent, "exec-"+id, gate) }()
			out := engine.Run(ctx, &Execution{ID: id, Script: policyProbeScript, Limits: lim, Log: entry})
			os.WriteFile(gate, nil, 0o644) // ends the reader if it found nothing
			cgroup := <-read
			os.Remove(gate)
			if out.Err != nil {
				return fail(fmt.Errorf("%s: probe: %s: %s %s", name, out.Err.Type, out.Err.Message, out.Err.Traceback))
			}
			var res map[string]any
			if err := json.Unmarshal(out.Result, &res); err != nil {
				return fail(fmt.Errorf("%s: probe result %q: %w", name, out.Result, err))
			}
			res["cgroup"] = cgroup
			b, _ := json.Marshal(res)
			results[name] = append(results[name], b)
		}
		if c, ok := engine.(interface{ Close() error }); ok {
			c.Close()
		}
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		return fail(err)
	}
	return 0
}

// readExecCgroup waits until the execution's cgroup (named id under
// parent) has its limits, reads them, and creates gate, which lets the
// probe go on; it gives up when gate exists (the execution ended) or ctx
// is done. It returns file -> value for the files found (v1 or v2).
func readExecCgroup(ctx context.Context, parent, id, gate string) map[string]string {
	files := []string{
		"memory/" + parent + "/" + id + "/memory.limit_in_bytes",
		"memory/" + parent + "/" + id + "/memory.memsw.limit_in_bytes",
		"pids/" + parent + "/" + id + "/pids.max",
		parent + "/" + id + "/memory.max",
		parent + "/" + id + "/memory.swap.max",
		parent + "/" + id + "/pids.max",
	}
	defer os.WriteFile(gate, nil, 0o644)
	readAll := func() map[string]string {
		got := map[string]string{}
		for _, f := range files {
			if b, err := os.ReadFile("/sys/fs/cgroup/" + f); err == nil {
				got[filepath.Base(f)] = strings.TrimSpace(string(b))
			}
		}
		return got
	}
	for ctx.Err() == nil {
		got := readAll()
		// pids.max is written after the memory limits (jail.NewExec), but
		// this round read the memory files before pids.max: once pids.max
		// is set, read them all again, so the memory files are read after
		// they were written.
		if got["pids.max"] != "" && got["pids.max"] != "max" {
			return readAll()
		}
		if _, err := os.Stat(gate); err == nil {
			return got
		}
		time.Sleep(5 * time.Millisecond)
	}
	return nil
}

func TestPolicyChangeReachesBothEngines(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test needs root (real nsjail, namespaces, cgroups)")
		}
		t.Skip("this test needs root")
	}
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Dir(filepath.Dir(file))
	name := fmt.Sprintf("pyexec-policy-%d", os.Getpid())
	// /run is traversable by the sandbox user, unlike t.TempDir().
	runDir := filepath.Join("/run", name)
	probeDir := filepath.Join(runDir, "probe")
	if err := os.MkdirAll(probeDir, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(runDir)
	if err := os.WriteFile(filepath.Join(probeDir, "marker"), []byte("policy"), 0o644); err != nil {
		t.Fatal(err)
	}
	word := fmt.Sprintf("word-%d", time.Now().UnixNano())
	config, _ := json.Marshal(policyHelperConfig{Root: root, RunDir: runDir, CgParent: name, ProbeDir: probeDir, ProbeWord: word})
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = []string{"PATH=/usr/bin:/bin", policyHelperEnv + "=" + string(config)}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdout, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, stderr.String())
	}
	t.Logf("helper output: %s", stdout)
	var results map[string][]policyProbe
	if err := json.Unmarshal(stdout, &results); err != nil {
		t.Fatalf("helper output %q: %v\n%s", stdout, err, stderr.String())
	}
	for _, engine := range []string{EngineCold, EngineWarm} {
		runs := results[engine]
		if len(runs) != 2 {
			t.Fatalf("%s: %d probe results, want 2", engine, len(runs))
		}
		for i, p := range runs {
			where := fmt.Sprintf("%s engine, execution %d", engine, i+1)
			if p.ProbeEnv != word {
				t.Errorf("%s: %s=%q, want %q (the policy's environment)", where, policyProbeVar, p.ProbeEnv, word)
			}
			if p.Marker != "policy" || p.MarkerWrite != "errno 30" {
				t.Errorf("%s: the policy's read-only bind: read %q, write %s; want \"policy\" and EROFS (errno 30)", where, p.Marker, p.MarkerWrite)
			}
			if p.ScratchBefore == nil || len(p.ScratchBefore) != 0 || p.ScratchSmall != "ok" || p.ScratchBig != "errno 28" {
				t.Errorf("%s: the policy's 1 MiB tmpfs: found %v, small write %s, 2 MiB write %s; want an empty fresh one, ok and ENOSPC (errno 28)",
					where, p.ScratchBefore, p.ScratchSmall, p.ScratchBig)
			}
			if p.Gate != "go" {
				t.Errorf("%s: the probe waited for the cgroup to be read: %s", where, p.Gate)
			}
			// The cgroup limits of the execution: memory (no swap) and
			// pids, as jail.Spec's Cgroup section says.
			mem, pids := strconv.Itoa(policyMemoryBytes), strconv.Itoa(policyPids)
			want := map[string]string{"pids.max": pids}
			if _, v2 := p.Cgroup["memory.max"]; v2 {
				want["memory.max"], want["memory.swap.max"] = mem, "0"
			} else {
				want["memory.limit_in_bytes"] = mem
				if _, ok := p.Cgroup["memory.memsw.limit_in_bytes"]; ok {
					want["memory.memsw.limit_in_bytes"] = mem
				}
			}
			if !maps.Equal(p.Cgroup, want) {
				t.Errorf("%s: the execution's cgroup %v, want %v", where, p.Cgroup, want)
			}
			if p.Rlimits["NOFILE"][0] != 77 {
				t.Errorf("%s: RLIMIT_NOFILE %v, want 77 (the execution's limit)", where, p.Rlimits["NOFILE"])
			}
		}
	}
	cold, warm := results[EngineCold][0], results[EngineWarm][0]
	if !slices.Equal(cold.Env, warm.Env) {
		t.Errorf("environments differ:\ncold %q\nwarm %q", cold.Env, warm.Env)
	}
	for res, c := range cold.Rlimits {
		if w := warm.Rlimits[res]; !slices.Equal(c, w) {
			t.Errorf("RLIMIT_%s: cold %v, warm %v", res, c, w)
		}
	}
	// zygote.py is bound into the zygote's jail only (the child inherits it).
	delete(warm.Mounts, warmengine.ZygoteJailPath)
	for point, c := range cold.Mounts {
		if w, ok := warm.Mounts[point]; !ok || w != c {
			t.Errorf("mount %s: cold %q, warm %q", point, c, w)
		}
	}
	for point, w := range warm.Mounts {
		if _, ok := cold.Mounts[point]; !ok {
			t.Errorf("mount %s only in the warm jail: %q", point, w)
		}
	}
	for _, dir := range []string{"/sys/fs/cgroup/" + name, "/sys/fs/cgroup/memory/" + name, "/sys/fs/cgroup/pids/" + name} {
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("cgroup %s left behind", dir)
		}
	}
}
