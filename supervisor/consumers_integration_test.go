package supervisor_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/python-executor/python-executor/wire"
)

// Helper modes of the test binary (see TestMain): with helperScript set, the
// helper runs the script helperCount times at once on helperSocket and
// prints one helperLine per outcome as it comes.
const (
	helperSocket = "PYEXEC_HELPER_SOCKET"
	helperScript = "PYEXEC_HELPER_SCRIPT"
	helperCount  = "PYEXEC_HELPER_COUNT"
)

// helperLine is one outcome a helper reports.
type helperLine struct {
	Result    string `json:"result,omitempty"`
	ErrorType string `json:"error_type,omitempty"`
	Message   string `json:"message,omitempty"`
	QueueMS   int64  `json:"queue_ms"`
}

// executeAsHelper is the body of a helper process that executes (see the
// constants above). A connection the supervisor refuses prints REJECTED.
func executeAsHelper(sock, script string, n int) {
	c := client.New(client.Config{SocketPath: sock, DialTimeout: 2 * time.Second, Software: "consumers-helper"})
	defer c.Close()
	if _, err := c.Status(context.Background()); err != nil {
		fmt.Println("REJECTED:", err)
		return
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			out, err := c.Execute(ctx, wire.Execute{Script: script}, nil)
			var l helperLine
			switch {
			case err != nil:
				l = helperLine{ErrorType: "transport", Message: err.Error()}
			case out.Err != nil:
				l = helperLine{ErrorType: string(out.Err.Type), Message: out.Err.Message, QueueMS: out.Done.QueueMS}
			default:
				l = helperLine{Result: string(out.Result), QueueMS: out.Done.QueueMS}
			}
			b, _ := json.Marshal(l)
			mu.Lock()
			fmt.Println(string(b))
			mu.Unlock()
		}()
	}
	wg.Wait()
}

// testUsers creates a group and users for one test and removes them when
// it ends. Names carry the test process's pid, so parallel runs differ.
type testUsers struct {
	t      *testing.T
	suffix string
}

func newTestUsers(t *testing.T) *testUsers {
	for _, tool := range []string{"useradd", "userdel", "groupadd", "groupdel"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to create the test's users: %v", tool, err)
		}
	}
	return &testUsers{t: t, suffix: strconv.Itoa(os.Getpid() % 1000000)}
}

// shadow runs one of the shadow tools, retrying while another process
// holds the password files' lock.
func (u *testUsers) shadow(args ...string) error {
	var out []byte
	var err error
	for range 20 {
		out, err = exec.Command(args[0], args[1:]...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "lock") {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// group creates a group named pyexec-it<role><pid> and returns its name and gid.
func (u *testUsers) group(role string) (string, int) {
	name := "pyexec-it" + role + u.suffix
	if err := u.shadow("groupadd", "-r", name); err != nil {
		u.t.Fatal(err)
	}
	u.t.Cleanup(func() {
		if err := u.shadow("groupdel", name); err != nil {
			u.t.Errorf("remove the test's group: %v", err)
		}
	})
	g, err := user.LookupGroup(name)
	if err != nil {
		u.t.Fatal(err)
	}
	gid, _ := strconv.Atoi(g.Gid)
	return name, gid
}

// user creates a system user pyexec-it<role><pid> with a group of its own and
// the supplementary groups given, and returns it.
func (u *testUsers) user(role string, groups ...string) *user.User {
	name := "pyexec-it" + role + u.suffix
	args := []string{"useradd", "-r", "-U", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin"}
	if len(groups) > 0 {
		args = append(args, "-G", strings.Join(groups, ","))
	}
	if err := u.shadow(append(args, name)...); err != nil {
		u.t.Fatal(err)
	}
	u.t.Cleanup(func() {
		if err := u.shadow("userdel", name); err != nil {
			u.t.Errorf("remove the test's user: %v", err)
		}
		// userdel removes the user's own group too; make sure.
		if _, err := user.LookupGroup(name); err == nil {
			u.shadow("groupdel", name)
		}
	})
	usr, err := user.Lookup(name)
	if err != nil {
		u.t.Fatal(err)
	}
	return usr
}

// helper is a copy of the test binary that a test's users can run (the
// original's directory is private to root).
func helperBinary(t *testing.T) string {
	dir, err := os.MkdirTemp("", "pyexec-consumers-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	helper := filepath.Join(dir, "helper.test")
	if err := os.WriteFile(helper, self, 0o755); err != nil {
		t.Fatal(err)
	}
	return helper
}

// asUser returns a command running the helper as u, with the groups a login
// would give u (its primary group and its supplementary groups from
// /etc/group).
func asUser(t *testing.T, helper string, u *user.User, sock, script string, n int) *exec.Cmd {
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	ids, err := u.GroupIds()
	if err != nil {
		t.Fatal(err)
	}
	var groups []uint32
	for _, s := range ids {
		g, _ := strconv.Atoi(s)
		groups = append(groups, uint32(g))
	}
	cmd := exec.Command(helper)
	cmd.Env = []string{helperSocket + "=" + sock, helperScript + "=" + script, helperCount + "=" + strconv.Itoa(n)}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: groups}}
	return cmd
}

// runAs runs the helper as u to its end and returns its outcome lines, or
// the REJECTED line.
func runAs(t *testing.T, helper string, u *user.User, sock, script string, n int) ([]helperLine, string) {
	out, err := asUser(t, helper, u, sock, script, n).CombinedOutput()
	if err != nil {
		t.Fatalf("helper as %s: %v: %s", u.Username, err, out)
	}
	if s := string(out); strings.HasPrefix(s, "REJECTED") {
		return nil, s
	}
	var lines []helperLine
	for _, s := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		var l helperLine
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("helper as %s printed %q: %v", u.Username, out, err)
		}
		lines = append(lines, l)
	}
	return lines, ""
}

// Members of the client group use the socket and are named in the logs;
// anyone else is kept out, by the socket's permissions and, past them, by
// the peer check; and one busy member cannot take the gateway's slots and
// queue places.
func TestInternalClients(t *testing.T) {
	supervisortest.RequireRoot(t)
	users := newTestUsers(t)
	group, _ := users.group("c")
	member := users.user("i", group) // a member by a supplementary group
	outsider := users.user("o")
	gw := users.user("g")
	helper := helperBinary(t)

	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := supervisortest.Start(t, supervisortest.Options{
			Engine:      engine,
			GatewayUser: gw.Username,
			// 2 slots, 4 queue places: an internal client may hold 1
			// and 2 of them (the default halves).
			Args: []string{"-client-group", group, "-slots", "2", "-queue", "4", "-max-queue-wait", "60s"},
		})

		t.Run("member executes", func(t *testing.T) {
			lines, rej := runAs(t, helper, member, inst.Socket, "def main(): return 7", 1)
			if rej != "" || len(lines) != 1 || lines[0].Result != "7" {
				t.Fatalf("member of %s: %v %s\n%s", group, lines, rej, inst.Logs)
			}
			wantLogClient(t, inst, member.Username)
		})

		t.Run("outsider cannot reach the socket", func(t *testing.T) {
			_, rej := runAs(t, helper, outsider, inst.Socket, "def main(): return 7", 1)
			if !strings.Contains(rej, "permission denied") {
				t.Fatalf("outsider reached the socket: %q", rej)
			}
		})

		t.Run("busy member leaves the gateway its share", func(t *testing.T) {
			// The member asks for 6 long executions: it runs 1, queues
			// 2, and is refused the other 3 at once, though a slot and
			// queue places are free. Without the caps it would hold both
			// slots and all 4 places, and the gateway would get busy.
			// The slot of the member's last execution is held until its
			// sandbox is torn down, a moment after its answer: wait for
			// it, or it would count against the member's share.
			waitStatus(t, inst, 0, 0)
			cmd := asUser(t, helper, member, inst.Socket, "import time\ndef main():\n    time.sleep(25)\n    return 'batch'\n", 6)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { cmd.Process.Kill(); cmd.Wait() }()
			refused := make(chan helperLine, 6)
			go func() {
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					var l helperLine
					json.Unmarshal(sc.Bytes(), &l)
					refused <- l
				}
				close(refused)
			}()
			for i := range 3 {
				select {
				case l, ok := <-refused:
					if !ok || l.ErrorType != string(wire.ErrBusy) || !strings.Contains(l.Message, "share") {
						t.Fatalf("member's outcome %d: %+v (ok %v), want busy for its share\n%s", i, l, ok, inst.Logs)
					}
				case <-time.After(60 * time.Second):
					t.Fatalf("the member's executions past its share were not refused at once\n%s", inst.Logs)
				}
			}
			waitStatus(t, inst, 1, 2)

			// The gateway runs three at once meanwhile: one takes the
			// free slot, two queue in the places left, and all finish
			// long before the member's first ends (it sleeps 25 s, and
			// is cancelled when the helper is killed at the end).
			begin := time.Now()
			lines, rej := runAs(t, helper, gw, inst.Socket, "def main(): return 'gw'", 3)
			if rej != "" || len(lines) != 3 {
				t.Fatalf("gateway: %v %s", lines, rej)
			}
			for _, l := range lines {
				if l.Result != `"gw"` {
					t.Fatalf("gateway starved by a busy member: %+v\n%s", l, inst.Logs)
				}
			}
			if d := time.Since(begin); d > 20*time.Second {
				t.Fatalf("the gateway's executions took %v: they waited for the member's", d)
			}
			wantLogClient(t, inst, "gateway")
			// The member still holds exactly its share once the
			// gateway's slots are free again (a slot is freed just
			// after its execution's answer): the slots the gateway
			// leaves do not go to the member's waiters.
			waitStatus(t, inst, 1, 2)
		})

		t.Run("outsider is refused by the peer check", func(t *testing.T) {
			// Open the socket to everyone to reach the check itself.
			os.Chmod(filepath.Dir(inst.Socket), 0o755)
			os.Chmod(inst.Socket, 0o666)
			_, rej := runAs(t, helper, outsider, inst.Socket, "def main(): return 7", 1)
			if rej == "" {
				t.Fatalf("outsider was served")
			}
			// The client sees the connection close as the supervisor
			// logs why: wait for the line rather than race it.
			logged := func() bool {
				l := inst.Logs.String()
				return strings.Contains(l, `"peer_uid":`+outsider.Uid) && strings.Contains(l, "rejected peer")
			}
			for end := time.Now().Add(10 * time.Second); !logged() && time.Now().Before(end); {
				time.Sleep(20 * time.Millisecond)
			}
			if !logged() {
				t.Fatalf("the supervisor did not log the outsider's rejection:\n%s", inst.Logs)
			}
		})
	})
}

// waitStatus waits until the supervisor runs and queues the given numbers.
func waitStatus(t *testing.T, inst *supervisortest.Supervisor, running, queued int) {
	t.Helper()
	st := &wire.Status{}
	for end := time.Now().Add(60 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		var err error
		if st, err = inst.Client.Status(context.Background()); err != nil {
			t.Fatal(err)
		}
		if st.Running == running && st.Queued == queued {
			return
		}
	}
	t.Fatalf("status %d running %d queued, want %d and %d\n%s", st.Running, st.Queued, running, queued, inst.Logs)
}

// wantLogClient checks that an execution's log lines name client. The line
// is written just after the answer is sent: it may take a moment.
func wantLogClient(t *testing.T, inst *supervisortest.Supervisor, client string) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		for _, line := range strings.Split(inst.Logs.String(), "\n") {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil || m["message"] != "execution finished" || m["client"] != client {
				continue
			}
			if m["software"] != "consumers-helper" {
				t.Fatalf("the client's own name is not logged beside its identity: %s", line)
			}
			return
		}
	}
	t.Fatalf("no execution logged with client %q:\n%s", client, inst.Logs)
}
