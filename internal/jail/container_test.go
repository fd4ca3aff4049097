package jail

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func containerPolicy(python, cwd string) Policy {
	return Policy{
		Python:       python,
		Args:         []string{"-c", "print(1)"},
		OutsideUID:   61999,
		OutsideGID:   61999,
		Env:          testEnv(),
		LogFD:        3,
		Limits:       goldenLimits,
		Seccomp:      true,
		NoNamespaces: true,
		Cwd:          cwd,
	}
}

// The container tier's jail takes no mounts, no cgroup, no zygote, and a
// private working directory, and turns every namespace off.
func TestRenderNoNamespaces(t *testing.T) {
	p := containerPolicy("/usr/bin/python3", "/tmp/w/exec-1")
	cfg, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(cfg)
	for _, want := range []string{"clone_newuser: false", "clone_newpid: false", "clone_newnet: false", "clone_newns: false", `cwd: "/tmp/w/exec-1"`,
		`inside_id: "61999"`, "mount_proc: false", "rlimit_nproc: 64", "rlimit_as: 512", "keep_caps: false", "disable_no_new_privs: false", containerSeccompName} {
		if !strings.Contains(s, want) {
			t.Errorf("config lacks %q:\n%s", want, s)
		}
	}
	for _, bad := range []string{"mount {", "cgroup_", "clone_newuser: true", "hostname"} {
		if strings.Contains(s, bad) {
			t.Errorf("config has %q:\n%s", bad, s)
		}
	}
	for name, mutate := range map[string]func(*Policy){
		"mounts": func(p *Policy) { p.Mounts = []Mount{{Kind: Bind, Src: "/usr", Dst: "/usr"}} },
		"cgroup": func(p *Policy) {
			p.Cgroup = &Placement{Mode: CgroupV2, Dir: "/sys/fs/cgroup/x", MemoryMax: 1, PidsMax: 1}
		},
		"zygote":  func(p *Policy) { p.Zygote = true },
		"no cwd":  func(p *Policy) { p.Cwd = "" },
		"root":    func(p *Policy) { p.Cwd = "/" },
		"gid":     func(p *Policy) { p.OutsideGID = 61998 },
		"root id": func(p *Policy) { p.OutsideUID, p.OutsideGID = 0, 0 },
	} {
		q := containerPolicy("/usr/bin/python3", "/tmp/w/exec-1")
		mutate(&q)
		if _, err := Render(q); err == nil {
			t.Errorf("%s: rendered, want an error", name)
		}
	}
}

// The tier's seccomp rules come before the shared policy's, which they use.
func TestContainerSeccompPolicy(t *testing.T) {
	base, err := SeccompPolicy()
	if err != nil {
		t.Fatal(err)
	}
	p, err := ContainerSeccompPolicy()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p, strings.TrimSuffix(base, "USE "+seccompName+" DEFAULT ALLOW\n")) ||
		!strings.Contains(p, "ERRNO(1) {\n    socket,") || !strings.Contains(p, "USE "+seccompName+"\n}") ||
		!strings.HasSuffix(p, "USE "+containerSeccompName+" DEFAULT ALLOW\n") {
		t.Fatalf("container policy:\n%s", p)
	}
}

// The real nsjail runs the container tier's jail as the given uid, in its
// directory, without capabilities, with no_new_privs and seccomp: no socket
// of any family, socketpair allowed.
func TestContainerJailRealNsjail(t *testing.T) {
	requireRoot(t)
	e := &jailEnv{nsjail: nsjailPath(t), python: venvPython(t)}
	dir := filepath.Join(reachableTempDir(t), "exec-1")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 61999, 61999); err != nil {
		t.Fatal(err)
	}
	p := containerPolicy(e.python, dir)
	p.Args = []string{"-c", `
import json, os, socket
def try_(f):
    try:
        f()
        return "ok"
    except OSError as e:
        return type(e).__name__
st = dict(l.split(":\t", 1) for l in open("/proc/self/status").read().splitlines() if ":\t" in l)
print(json.dumps({"ids": [os.getuid(), os.geteuid(), os.getgid(), os.getgroups()], "cwd": os.getcwd(),
    "caps": [st["CapEff"].strip(), st["CapBnd"].strip()], "nnp": st["NoNewPrivs"].strip(), "seccomp": st["Seccomp"].strip(),
    "inet": try_(lambda: socket.socket(socket.AF_INET)), "unix": try_(lambda: socket.socket(socket.AF_UNIX)),
    "pair": try_(socket.socketpair), "write_cwd": try_(lambda: open("f", "w").close())}))
`}
	r := e.mustRun(t, p)
	var got any
	lastJSON(t, r.stdout, &got)
	want := map[string]any{"ids": []any{61999.0, 61999.0, 61999.0, []any{}}, "cwd": dir, "caps": []any{"0000000000000000", "0000000000000000"},
		"nnp": "1", "seccomp": "2", "inet": "PermissionError", "unix": "PermissionError", "pair": "ok", "write_cwd": "ok"}
	if !equalJSONish(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
}
