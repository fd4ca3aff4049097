package warm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/vmihailenco/msgpack/v5"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
)

// ZygoteJailPath is where zygote.py appears inside the jail, beside the
// runner it imports.
const ZygoteJailPath = "/opt/python-executor/zygote.py"

// zygoteControlFD is the control socket's fd inside the zygote jail.
const zygoteControlFD = 3

// zygoteProtocol is the version of the zygote control messages, specified
// in runner/ZYGOTE.md.
const zygoteProtocol = 2

const (
	// zygoteReadyTimeout bounds a zygote's start: nsjail, the interpreter
	// and the preload imports.
	zygoteReadyTimeout = 90 * time.Second
	// zygoteSendTimeout bounds handing an order to a zygote; only a hung
	// zygote with a full socket buffer makes it expire.
	zygoteSendTimeout = 2 * time.Second
	// zygoteMemoryBytes is the memory limit of a zygote's own cgroup: the
	// interpreter with the preloaded modules, and children until they are
	// moved into their execution's cgroup.
	zygoteMemoryBytes = 1 << 30
	// maxZygoteMessage bounds what is read from a zygote or its child in
	// one message; they are hostile like everything from a jail.
	maxZygoteMessage = 4 << 10
	// zygoteRestartDelay is the pause before a zygote that died or failed to
	// start is started again; it doubles up to zygoteRestartMax.
	zygoteRestartDelay = 100 * time.Millisecond
	zygoteRestartMax   = 10 * time.Second
)

// zygoteInit is the first message to a zygote.
type zygoteInit struct {
	V       int      `msgpack:"v"`
	Preload []string `msgpack:"preload"`
	// Child is what the zygote applies to every child it creates.
	Child jail.ChildSetup `msgpack:"child"`
}

// zygoteReady is the zygote's answer once its modules are imported and
// warmed up. Failed names the modules that did not import and the warm-up
// workloads that did not run as expected; Warmed, those that did.
type zygoteReady struct {
	V       int      `msgpack:"v"`
	Failed  []string `msgpack:"failed"`
	Warmed  []string `msgpack:"warmed"`
	HugeKB  int      `msgpack:"huge_kb"`
	Threads int      `msgpack:"threads"`
}

// zygoteProc is one running zygote: nsjail, the zygote inside it, and the
// supervisor's end of its control socket.
type zygoteProc struct {
	slot     int
	pool     *zygotePool // its kind
	cmd      *exec.Cmd
	pid      int // the zygote's host pid (nsjail's child)
	pidfd    int // the zygote's pidfd, -1 until it is ready
	nsjailFD int // nsjail's pidfd, closed by cleanupZygote
	conn     *net.UnixConn
	cg       *jail.ExecCgroup // nil without cgroups
	dead     chan struct{}    // closed when nsjail has exited and been reaped
	broken   atomic.Bool      // set when it must not get orders any more
	sendMu   sync.Mutex       // guards conn writes: one order at a time
	logDone  chan struct{}
}

// order hands one execution to the zygote: the order message and its fds
// travel in one packet.
func (z *zygoteProc) order(body []byte, fds []int) error {
	z.sendMu.Lock()
	defer z.sendMu.Unlock()
	z.conn.SetWriteDeadline(time.Now().Add(zygoteSendTimeout))
	_, _, err := z.conn.WriteMsgUnix(body, unix.UnixRights(fds...), nil)
	return err
}

// kill ends the zygote and everything in its PID namespace (its children's
// executions included); the keeper then starts a new one.
// Signals go through pidfds: the zygote's pid may have been reaped by
// nsjail and given to another process.
func (z *zygoteProc) kill() {
	z.broken.Store(true)
	if z.pidfd >= 0 {
		unix.PidfdSendSignal(z.pidfd, unix.SIGKILL, nil, 0)
	}
	if z.cmd.Process != nil {
		z.cmd.Process.Kill()
	}
}

// zygoteSlot keeps one zygote running, restarting it when it dies.
type zygoteSlot struct {
	idx  int
	pool *zygotePool
	mu   sync.Mutex  // guards cur
	cur  *zygoteProc // nil while (re)starting
}

func (s *zygoteSlot) current() *zygoteProc {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *zygoteSlot) set(z *zygoteProc) {
	s.mu.Lock()
	s.cur = z
	s.mu.Unlock()
}

// keep runs the slot's zygotes until stop is closed. first receives the
// outcome of the first start.
func (e *warmEngine) keep(s *zygoteSlot, stop <-chan struct{}, first chan<- error) {
	delay := zygoteRestartDelay
	log := e.log.WithFields(logrus.Fields{"zygote": s.idx, "zygote_kind": s.pool.kind.String()})
	for gen := 0; ; gen++ {
		z, err := e.startZygote(s, gen)
		if first != nil {
			first <- err
			first = nil
		}
		if err != nil {
			log.WithError(err).Error("zygote failed to start")
			select {
			case <-stop:
				return
			case <-time.After(delay):
			}
			delay = min(2*delay, zygoteRestartMax)
			continue
		}
		s.set(z)
		e.noteZygotes()
		select {
		case <-z.dead:
			log.WithField("zygote_pid", z.pid).Warn("zygote exited; starting a new one")
			engine.CountZygoteRestart()
			s.set(nil)
			e.noteZygotes()
			e.cleanupZygote(z)
			delay = zygoteRestartDelay
		case <-stop:
			s.set(nil)
			z.kill()
			<-z.dead
			e.cleanupZygote(z)
			return
		}
	}
}

func (e *warmEngine) cleanupZygote(z *zygoteProc) {
	z.conn.Close()
	if z.nsjailFD >= 0 {
		unix.Close(z.nsjailFD)
		z.nsjailFD = -1
	}
	if z.pidfd >= 0 {
		// nsjail may be reaped before the zygote, its PID 1, has finished
		// exiting; without cgroups nothing else waits for it.
		unix.PidfdSendSignal(z.pidfd, unix.SIGKILL, nil, 0)
		proc.WaitPidfd(z.pidfd, childExitWait)
		unix.Close(z.pidfd)
		z.pidfd = -1
	}
	if z.cg != nil {
		engine.RemoveCgroup(z.cg, e.log.WithField("zygote", z.slot))
	}
}

// startZygote starts one zygote for s and waits until it has imported its
// pool's modules.
func (e *warmEngine) startZygote(s *zygoteSlot, gen int) (z *zygoteProc, err error) {
	slot := s.idx
	pol := e.policy
	pol.Limits = e.maxLimits
	pol.LogFD = 0 // nsjail's warnings go to the zygote's stderr, which is logged
	pol.PassFDs = []int{zygoteControlFD}
	pol.Args = []string{ZygoteJailPath}
	pol.Env = append(append([]string(nil), pol.Env...), fmt.Sprintf("PYEXEC_CONTROL_FD=%d", zygoteControlFD))
	pol.Zygote = true

	var cg *jail.ExecCgroup
	if e.cgroups != nil {
		spec, err := jail.DescribeWithCgroup(pol)
		if err != nil {
			return nil, fmt.Errorf("describe zygote jail: %w", err)
		}
		lim := spec.Cgroup
		lim.MemoryBytes = max(lim.MemoryBytes, zygoteMemoryBytes)
		cg, err = e.cgroups.NewExec(fmt.Sprintf("zygote-%d-%d", slot, gen), lim)
		if err != nil {
			return nil, fmt.Errorf("create zygote cgroup: %w", err)
		}
		pol.Cgroup = cg.Placement()
	}
	cleanupCg := func() {
		if cg != nil {
			engine.RemoveCgroup(cg, e.log.WithField("zygote", slot))
		}
	}
	cfg, err := jail.Render(pol)
	if err != nil {
		cleanupCg()
		return nil, fmt.Errorf("render zygote jail: %w", err)
	}

	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		cleanupCg()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "zygote-control")
	defer theirs.Close()
	conn, err := packetConn(fds[0], "zygote-control")
	if err != nil {
		theirs.Close()
		cleanupCg()
		return nil, err
	}
	if err := setPassCred(conn); err != nil {
		conn.Close()
		cleanupCg()
		return nil, err
	}
	logR, logW, err := os.Pipe()
	if err != nil {
		conn.Close()
		cleanupCg()
		return nil, fmt.Errorf("log pipe: %w", err)
	}

	// fd 3: the control socket; fd 4: the config (not passed into the jail).
	cmd, nsjailFD, err := jail.Launch{
		Nsjail: e.nsjail, Config: cfg, ConfigFD: 4,
		Files:  []*os.File{theirs, nil},
		Stdout: logW, Stderr: logW,
	}.Start(e.reaper.Start)
	logW.Close()
	if err != nil {
		logR.Close()
		conn.Close()
		cleanupCg()
		return nil, err
	}
	z = &zygoteProc{slot: slot, pool: s.pool, pidfd: -1, nsjailFD: nsjailFD, cmd: cmd, conn: conn, cg: cg, dead: make(chan struct{}), logDone: make(chan struct{})}
	log := e.log.WithFields(logrus.Fields{"zygote": slot, "zygote_kind": s.pool.kind.String(), "zygote_nsjail_pid": cmd.Process.Pid})
	go func() {
		defer close(z.logDone)
		sc := bufio.NewScanner(io.LimitReader(logR, 1<<20))
		for sc.Scan() {
			log.WithField("output", sc.Text()).Warn("zygote output")
		}
		io.Copy(io.Discard, logR)
		logR.Close()
	}()
	go func() {
		e.reaper.Wait(cmd)
		close(z.dead)
	}()
	defer func() {
		if err != nil {
			z.kill()
			<-z.dead
			e.cleanupZygote(z)
		}
	}()
	// A zygote that dies while starting, or a supervisor stopping, ends
	// the wait for ready at once.
	started := make(chan struct{})
	defer close(started)
	go func() {
		select {
		case <-z.dead:
			conn.SetReadDeadline(time.Now())
		case <-e.stop:
			conn.SetReadDeadline(time.Now())
		case <-started:
		}
	}()

	init, err := msgpack.Marshal(zygoteInit{V: zygoteProtocol, Preload: s.pool.preload, Child: e.setup})
	if err != nil {
		return z, fmt.Errorf("encode init: %w", err)
	}
	conn.SetWriteDeadline(time.Now().Add(zygoteSendTimeout))
	if _, err := conn.Write(init); err != nil {
		return z, fmt.Errorf("send init: %w", err)
	}
	msg, pid, err := readPacket(conn, time.Now().Add(zygoteReadyTimeout))
	if err != nil {
		return z, fmt.Errorf("wait for ready: %w", err)
	}
	var ready zygoteReady
	if err := msgpack.Unmarshal(msg, &ready); err != nil || ready.V != zygoteProtocol {
		return z, fmt.Errorf("malformed ready message (%v)", err)
	}
	if z.pidfd, err = proc.PidfdOfChild(pid, cmd.Process.Pid, nsjailFD); err != nil {
		return z, fmt.Errorf("ready message from pid %d, not nsjail's child: %w", pid, err)
	}
	z.pid = pid
	if vm := vmSizeBytes(pid); vm > s.pool.vm.Load() {
		s.pool.vm.Store(vm)
	}
	if ready.Threads != 1 {
		return z, fmt.Errorf("zygote has %d threads after the preload; fork is only safe with one", ready.Threads)
	}
	for _, f := range ready.Failed {
		log.WithField("failure", f).Warn("zygote could not preload or warm up a module")
	}
	log.WithFields(logrus.Fields{"zygote_pid": pid, "warmed": strings.Join(ready.Warmed, ","), "huge_kb": ready.HugeKB}).Info("zygote ready")
	return z, nil
}

// packetConn wraps a SOCK_SEQPACKET fd as a *net.UnixConn (deadlines,
// ancillary data). It takes ownership of fd.
func packetConn(fd int, name string) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), name)
	defer f.Close()
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("%s: not a unix socket", name)
	}
	return uc, nil
}

// setPassCred makes the kernel attach the sender's credentials (its pid as
// seen from here) to every message received on c.
func setPassCred(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("SO_PASSCRED: %w", serr)
	}
	return nil
}

// errPeerClosed is a packet socket whose peer closed its end.
var errPeerClosed = errors.New("peer closed the socket")

// readPacket reads one message of at most maxZygoteMessage bytes before the
// deadline, with its sender's host pid from SCM_CREDENTIALS (0 when none was
// attached). A longer message is an error, never a partial read.
func readPacket(c *net.UnixConn, deadline time.Time) ([]byte, int, error) {
	c.SetReadDeadline(deadline)
	buf := make([]byte, maxZygoteMessage+1)
	oob := make([]byte, unix.CmsgSpace(unix.SizeofUcred)+unix.CmsgSpace(4*8))
	n, oobn, flags, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, errPeerClosed
		}
		return nil, 0, err
	}
	if n == 0 && oobn == 0 {
		return nil, 0, errPeerClosed
	}
	if n > maxZygoteMessage || flags&(unix.MSG_TRUNC|unix.MSG_CTRUNC) != 0 {
		return nil, 0, fmt.Errorf("message over %d bytes or truncated", maxZygoteMessage)
	}
	pid := 0
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		return nil, 0, fmt.Errorf("control message: %w", err)
	}
	for _, m := range msgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_CREDENTIALS:
			if cred, err := unix.ParseUnixCredentials(&m); err == nil {
				pid = int(cred.Pid)
			}
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_RIGHTS:
			// Nothing may send us fds; close whatever came.
			if fds, err := unix.ParseUnixRights(&m); err == nil {
				for _, fd := range fds {
					unix.Close(fd)
				}
			}
		}
	}
	return buf[:n], pid, nil
}

// vmSizeBytes is a process's address-space size (VmSize), 0 when unknown.
func vmSizeBytes(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	i := bytes.Index(b, []byte("\nVmSize:"))
	if i < 0 {
		return 0
	}
	f := bytes.Fields(b[i+8:])
	if len(f) == 0 {
		return 0
	}
	kb, _ := strconv.ParseInt(string(f[0]), 10, 64)
	return kb << 10
}
