package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/wire"
)

// Software names this build in hellos and status answers.
const Software = "python-executor/0.1"

// writeTimeout bounds one frame write to a client; a client that stops
// reading for longer is dropped rather than allowed to stall executions.
const writeTimeout = 10 * time.Second

// helloTimeout bounds how long a new connection may take to say hello.
const helloTimeout = 5 * time.Second

// offeredFeatures are the optional protocol features this supervisor implements
// (see wire.FeatureSet); a client's hello gets those of them it asks for.
// A feature adds its wire constant here once the supervisor implements it.
var offeredFeatures = wire.NewFeatureSet(wire.FeatureIO, wire.FeatureImages, wire.FeatureMetrics)

// Server accepts clients on the supervisor socket and runs their executions.
type Server struct {
	cfg       Config
	engine    Engine
	isolation string // "full" or "degraded: <why>"
	cgroups   string // "v1", "v2" or "none"
	prot      Protections
	log       *logrus.Entry
	admit     *admission
	clientGID int             // ClientGroup's gid; -1 = none
	features  wire.FeatureSet // offered in hellos; the package's features, or a test's
	metrics   *metrics        // the registry metrics_request answers with

	seq      atomic.Uint64 // execution ids
	draining atomic.Bool   // set once Serve's context ended

	// cgroupProbe, when set, creates and removes a throwaway execution
	// cgroup: whether executions can get theirs. probe caches its verdict.
	cgroupProbe func() error
	probe       probeCache

	// nameClient is clientName; tests replace it to stand for a slow NSS.
	nameClient func(uid, gatewayUID int) string

	mu    sync.Mutex // guards conns
	conns map[*conn]struct{}
}

// NewServer returns a server that runs executions on engine. isolation and
// cgroups are reported in status answers.
func NewServer(cfg Config, engine Engine, isolation, cgroups string, log *logrus.Entry) *Server {
	cfg.applyDefaults()
	clientGID := -1
	if cfg.ClientGroup != "" {
		// Validate has checked the group exists; should it vanish in
		// between, nobody is admitted by it (fail closed).
		if gid, err := lookupGroup(cfg.ClientGroup); err == nil {
			clientGID = gid
		} else {
			log.WithError(err).Error("client group: nobody is admitted as a member")
		}
	}
	s := &Server{
		cfg:        cfg,
		engine:     engine,
		isolation:  isolation,
		cgroups:    cgroups,
		log:        log,
		admit:      newAdmission(cfg.Slots, cfg.QueueSize, cfg.ClientSlots, cfg.ClientQueue, ClientGateway, ClientRoot),
		clientGID:  clientGID,
		features:   offeredFeatures,
		conns:      make(map[*conn]struct{}),
		nameClient: clientName,
	}
	s.metrics = newMetrics(s)
	return s
}

// Listen creates the socket: its directory 0750 root:GatewayGID, the socket
// 0660, each with an ACL entry giving Config.ClientGroup the group's access
// when there is one. It refuses when another supervisor answers on the path
// and replaces a stale socket file.
func Listen(cfg Config) (*net.UnixListener, error) {
	dir := filepath.Dir(cfg.SocketPath)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("create socket dir: %w", err)
	}
	gid := cfg.GatewayGID
	if gid < 0 {
		gid = 0
	}
	if err := os.Chown(dir, 0, gid); err != nil {
		return nil, fmt.Errorf("chown socket dir: %w", err)
	}
	if err := os.Chmod(dir, 0o750); err != nil {
		return nil, fmt.Errorf("chmod socket dir: %w", err)
	}
	clientGID := -1
	if cfg.ClientGroup != "" {
		var err error
		if clientGID, err = lookupGroup(cfg.ClientGroup); err != nil {
			return nil, fmt.Errorf("client group: %w", err)
		}
		if err := grantGroup(dir, 0o750, clientGID); err != nil {
			return nil, fmt.Errorf("socket dir: %w", err)
		}
	} else if err := unix.Removexattr(dir, aclXattr); err != nil && !errors.Is(err, unix.ENODATA) && !errors.Is(err, unix.EOPNOTSUPP) {
		// A group granted by an earlier run's -client-group must not
		// keep its access once the flag is gone.
		return nil, fmt.Errorf("socket dir: remove ACL: %w", err)
	}
	if c, err := net.DialTimeout("unix", cfg.SocketPath, 500*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("another supervisor is already listening on %s", cfg.SocketPath)
	}
	if err := os.Remove(cfg.SocketPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	// Create the socket with no access at all, then open it up: there is no
	// window in which it is reachable with the wrong mode.
	old := syscall.Umask(0o777)
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: cfg.SocketPath, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if err := os.Chown(cfg.SocketPath, 0, gid); err != nil {
		l.Close()
		return nil, fmt.Errorf("chown socket: %w", err)
	}
	if err := os.Chmod(cfg.SocketPath, 0o660); err != nil {
		l.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	if clientGID >= 0 {
		if err := grantGroup(cfg.SocketPath, 0o660, clientGID); err != nil {
			l.Close()
			return nil, fmt.Errorf("socket: %w", err)
		}
	}
	return l, nil
}

// Serve accepts connections until ctx is done, then drains: it stops
// accepting connections and executions, lets the executions in flight finish
// for up to Config.DrainTimeout (status requests are still answered, saying
// "shutting down"), then closes every connection, cancelling what is left,
// and waits for them.
func (s *Server) Serve(ctx context.Context, l *net.UnixListener) error {
	// Connections outlive ctx by the drain; base ends them after it.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	var wg sync.WaitGroup
	err := s.accept(ctx, base, l, &wg)
	s.drain()
	cancelBase()
	s.closeAll()
	wg.Wait()
	return err
}

// drain refuses new executions and waits, up to Config.DrainTimeout, for
// the running and queued ones to end.
func (s *Server) drain() {
	s.draining.Store(true)
	s.admit.close()
	running, queued := s.admit.counts()
	if running+queued == 0 {
		return
	}
	s.log.WithFields(logrus.Fields{"running": running, "queued": queued, "drain_timeout": s.cfg.DrainTimeout.String()}).Info("draining: waiting for the executions in flight")
	for end := time.Now().Add(s.cfg.DrainTimeout); time.Now().Before(end); {
		if running, queued = s.admit.counts(); running+queued == 0 {
			s.log.Info("drained")
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.log.WithFields(logrus.Fields{"running": running, "queued": queued}).Warn("drain timeout: cancelling the executions still in flight")
}

// accept serves connections on l, each under base, until ctx is done.
func (s *Server) accept(ctx, base context.Context, l *net.UnixListener, wg *sync.WaitGroup) error {
	for {
		c, err := l.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		p, err := s.peerOf(c)
		log := s.log.WithFields(logrus.Fields{"peer_uid": p.uid, "peer_gid": p.gid})
		if err != nil || !s.peerAllowed(p) {
			if err == nil && s.clientGID >= 0 {
				err = fmt.Errorf("neither root, the gateway, nor a member of the client group %s", s.cfg.ClientGroup)
			}
			log.WithError(err).Warn("rejected peer")
			c.Close()
			continue
		}
		// Registered here, so that closeAll cannot miss it; named in its
		// own goroutine, because naming an internal client asks NSS (files,
		// or LDAP and its timeouts), which must not hold up the next accept.
		cn := &conn{srv: s, c: c, live: make(map[uint32]context.CancelFunc)}
		s.mu.Lock()
		s.conns[cn] = struct{}{}
		s.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			cn.client = s.nameClient(p.uid, s.cfg.GatewayUID)
			cn.log = log.WithField("client", cn.client)
			s.metrics.connections.WithLabelValues(cn.client).Inc()
			if err := cn.serve(base); err != nil {
				cn.log.WithError(err).Info("connection closed")
			}
			s.mu.Lock()
			delete(s.conns, cn)
			s.mu.Unlock()
			s.metrics.connections.WithLabelValues(cn.client).Dec()
		}()
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.c.Close()
	}
}

// peerOf reads the peer's credentials; its supplementary groups only when
// they alone could admit it (a client group is set and nothing else admits
// the peer), so root and the gateway never depend on SO_PEERGROUPS.
func (s *Server) peerOf(c *net.UnixConn) (peer, error) {
	uid, gid, err := wire.PeerCred(c)
	p := peer{uid: uid, gid: gid}
	if err != nil || s.clientGID < 0 || s.peerAllowed(p) {
		return p, err
	}
	p.groups, err = peerGroups(c)
	return p, err
}

// peerAllowed reports whether a peer may use the socket: root, exactly the
// configured gateway identity, or a member of the client group. Everything
// else is refused (fail closed).
func (s *Server) peerAllowed(p peer) bool {
	if p.uid == 0 {
		return true
	}
	if s.cfg.GatewayUID >= 0 && p.uid == s.cfg.GatewayUID && p.gid == s.cfg.GatewayGID {
		return true
	}
	return p.member(s.clientGID)
}

// SetProtections sets the tier and protections status answers report.
// Call it before Serve.
func (s *Server) SetProtections(p Protections) { s.prot = p }

// Status is what the server reports about itself.
func (s *Server) Status() wire.Status {
	running, queued := s.admit.counts()
	return wire.Status{
		Software:   Software,
		Engine:     s.engine.Name(),
		Isolation:  s.isolation,
		Cgroups:    s.cgroups,
		Running:    running,
		Queued:     queued,
		Slots:      s.cfg.Slots,
		QueueSize:  s.cfg.QueueSize,
		NotReady:   s.notReady(),
		MaxQueueMS: s.cfg.MaxQueueWait.Milliseconds(),

		Tier:        s.prot.Tier,
		Protections: s.prot.Active,
		Missing:     s.prot.Missing,
	}
}

// readiness is implemented by engines that can lose the ability to run
// executions while the supervisor is up (the warm engine without zygotes).
type readiness interface {
	// NotReady says why executions cannot run, once that has been so for
	// longer than window; "" while they can.
	NotReady(window time.Duration) string
}

// notReady says why executions cannot run now; "" when they can.
func (s *Server) notReady() string {
	if s.draining.Load() {
		return "shutting down"
	}
	if s.cgroupProbe != nil {
		if err := s.probe.get(s.cgroupProbe, s.log); err != nil {
			// The detail (host paths) goes to the log only: /health is
			// public.
			return "cannot create execution cgroups"
		}
	}
	if r, ok := s.engine.(readiness); ok {
		return r.NotReady(s.cfg.NotReadyAfter)
	}
	return ""
}

// probeEvery bounds how often status requests run the cgroup probe.
const probeEvery = time.Second

// probeCache runs a probe at most once per probeEvery and keeps its result.
type probeCache struct {
	mu   sync.Mutex
	at   time.Time
	last error
}

func (p *probeCache) get(probe func() error, log *logrus.Entry) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.at) >= probeEvery {
		err := probe()
		switch {
		case err != nil && p.last == nil:
			log.WithError(err).Error("not ready: cannot create execution cgroups")
		case err == nil && p.last != nil:
			log.Info("ready again: execution cgroups can be created")
		}
		p.last, p.at = err, time.Now()
	}
	return p.last
}

func (s *Server) newExecutionID() string {
	var b [4]byte
	rand.Read(b[:])
	return fmt.Sprintf("%d-%s", s.seq.Add(1), hex.EncodeToString(b[:]))
}

// conn is one client connection.
type conn struct {
	srv    *Server
	c      *net.UnixConn
	client string // who it is (see clientName): its log field and admission share
	log    *logrus.Entry

	// features are the optional features agreed in the hello, fixed for
	// the connection's life: only these may change what it is sent.
	features wire.FeatureSet

	wmu sync.Mutex // guards writes to c

	mu   sync.Mutex // guards live
	live map[uint32]context.CancelFunc
}

func (cn *conn) send(id uint32, t wire.Type, v any) error {
	f, err := wire.NewFrame(id, t, v)
	if err != nil {
		return err
	}
	cn.wmu.Lock()
	defer cn.wmu.Unlock()
	cn.c.SetWriteDeadline(time.Now().Add(writeTimeout))
	if err := wire.WriteFrame(cn.c, f); err != nil {
		// A client that cannot take its events is gone; closing the
		// connection cancels the rest of its executions.
		cn.c.Close()
		return err
	}
	return nil
}

func (cn *conn) serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	defer cn.c.Close()

	max := cn.srv.cfg.MaxFrame
	if max == 0 {
		max = wire.DefaultMaxFrame
	}
	cn.c.SetReadDeadline(time.Now().Add(helloTimeout))
	f, err := wire.ReadFrame(cn.c, max)
	if err != nil {
		return fmt.Errorf("read hello: %w", err)
	}
	var h wire.Hello
	if f.Type != wire.TypeHello {
		cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "expected hello, got " + f.Type.String()})
		return fmt.Errorf("expected hello, got %s", f.Type)
	}
	if err := wire.Unmarshal(f.Body, &h); err != nil {
		cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "malformed hello"})
		return err
	}
	if h.Version != int(wire.Version) || f.Version != wire.Version {
		cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrVersionMismatch, Message: fmt.Sprintf("protocol version %d is not supported; this supervisor speaks %d", h.Version, wire.Version)})
		return fmt.Errorf("version mismatch: client speaks %d", h.Version)
	}
	// Features the client lists that this supervisor lacks are ignored;
	// a client that lists none (or predates features) gets the base
	// protocol and a hello without the key, as before features existed.
	cn.features = cn.srv.features.Intersect(h.Features)
	if err := cn.send(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: Software, Features: cn.features.Names()}); err != nil {
		return fmt.Errorf("send hello: %w", err)
	}
	cn.c.SetReadDeadline(time.Time{})
	// "client" is the peer's identity (set at accept); what the client
	// says it is goes beside it.
	cn.log = cn.log.WithField("software", h.Software)
	if cn.features.Len() > 0 {
		cn.log = cn.log.WithField("features", cn.features.String())
	}

	for {
		f, err := wire.ReadFrame(cn.c, max)
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, wire.ErrFrameTooLarge) {
				cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: err.Error()})
			}
			return fmt.Errorf("read frame: %w", err)
		}
		if f.Version != wire.Version {
			cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: fmt.Sprintf("frame version %d, agreed %d", f.Version, wire.Version)})
			return fmt.Errorf("frame version %d", f.Version)
		}
		switch f.Type {
		case wire.TypeExecute:
			var req wire.Execute
			if err := wire.Unmarshal(f.Body, &req); err != nil {
				cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "malformed execute"})
				return err
			}
			if f.RequestID == 0 {
				cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "execute needs a non-zero request id"})
				return errors.New("execute with request id 0")
			}
			xctx, xcancel := context.WithCancel(ctx)
			cn.mu.Lock()
			_, dup := cn.live[f.RequestID]
			if !dup {
				cn.live[f.RequestID] = xcancel
			}
			cn.mu.Unlock()
			if dup {
				xcancel()
				cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: fmt.Sprintf("request id %d is already live", f.RequestID)})
				return fmt.Errorf("request id %d reused", f.RequestID)
			}
			wg.Add(1)
			go func(id uint32) {
				defer wg.Done()
				defer xcancel()
				cn.execute(xctx, id, req)
				cn.mu.Lock()
				delete(cn.live, id)
				cn.mu.Unlock()
			}(f.RequestID)
		case wire.TypeCancel:
			cn.mu.Lock()
			if c, ok := cn.live[f.RequestID]; ok {
				c()
			}
			cn.mu.Unlock()
		case wire.TypeStatusRequest:
			cn.send(0, wire.TypeStatus, cn.srv.Status())
		case wire.TypeMetricsRequest:
			if !cn.features.Has(wire.FeatureMetrics) {
				// As any type the connection did not agree to.
				cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "unexpected message type " + f.Type.String()})
				return fmt.Errorf("unexpected message type %s", f.Type)
			}
			m, err := cn.srv.metricsAnswer()
			if err != nil {
				// A collector failed: the answer is still due (answers are
				// matched by order), with what could be gathered.
				cn.log.WithError(err).Error("gather metrics")
			}
			cn.send(0, wire.TypeMetrics, m)
		default:
			cn.send(0, wire.TypeError, wire.Error{Type: wire.ErrProtocol, Message: "unexpected message type " + f.Type.String()})
			return fmt.Errorf("unexpected message type %s", f.Type)
		}
	}
}

// execute runs one request and streams its events; it always ends the
// request id with a done frame (unless the connection is gone).
func (cn *conn) execute(ctx context.Context, id uint32, req wire.Execute) {
	s := cn.srv
	xid := s.newExecutionID()
	log := cn.log.WithFields(logrus.Fields{"execution_id": xid, "request_id": req.TraceID})
	m := s.metrics
	finish := func(out Outcome) {
		m.executions.WithLabelValues(cn.client, s.engine.Name(), outcomeLabel(out)).Inc()
		m.countOutput(cn.client, out)
		if out.Err != nil {
			cn.send(id, wire.TypeError, *out.Err)
		} else {
			cn.send(id, wire.TypeResult, wire.Result{
				JSON: out.Result, Files: out.Files, FilesTruncated: out.FilesTruncated,
				Images: out.Images, ImagesTruncated: out.ImagesTruncated,
			})
		}
		cn.send(id, wire.TypeDone, out.Done)
		fields := logrus.Fields{"duration_ms": out.Done.WallMS, "exit_reason": out.Done.ExitReason, "cpu_ms": out.Done.CPUMS, "peak_memory_bytes": out.Done.PeakMemoryBytes}
		if out.Err != nil {
			fields["error_type"] = out.Err.Type
		}
		log.WithFields(fields).Info("execution finished")
	}
	refuse := func(e *wire.Error) {
		finish(Outcome{Err: e, Done: wire.Done{ExitReason: wire.ExitError, ExitCode: -1}})
	}

	if req.Script == "" {
		refuse(&wire.Error{Type: wire.ErrInvalidRequest, Message: "script is empty"})
		return
	}
	limits, lerr := engine.ResolveLimits(req.Limits, s.cfg.Defaults, s.cfg.Max)
	if lerr != nil {
		refuse(lerr)
		return
	}
	if ierr := checkIO(req, limits, cn.features.Has(wire.FeatureIO)); ierr != nil {
		refuse(ierr)
		return
	}
	if !cn.features.Has(wire.FeatureIO) {
		// A base-protocol client gets no output files: nothing is
		// collected for it.
		limits.FilesOutCount = 0
	}
	if why := s.notReady(); why != "" && !s.draining.Load() {
		// Fail fast, as /health says: a retry elsewhere beats a wait.
		m.busy.WithLabelValues(cn.client, busyNotReady).Inc()
		refuse(&wire.Error{Type: wire.ErrBusy, Message: "the service cannot run executions now (" + why + "); retry"})
		return
	}
	maxWait := s.cfg.MaxQueueWait
	if req.MaxQueueMS > 0 {
		// The caller's deadline counts the wait: never start later than
		// it will wait for the answer.
		maxWait = min(maxWait, time.Duration(req.MaxQueueMS)*time.Millisecond)
	}
	release, waited, why := s.admit.enter(ctx, cn.client, maxWait)
	queueMS := waited.Milliseconds()
	if why == admitted || why == waitedTooLong || why == ctxDone {
		m.queueWait.WithLabelValues(cn.client).Observe(waited.Seconds())
	}
	if why != admitted {
		var e *wire.Error
		switch why {
		case ctxDone:
			e = &wire.Error{Type: wire.ErrCancelled, Message: "the execution was cancelled while queued"}
		case waitedTooLong:
			m.busy.WithLabelValues(cn.client, busyQueueWait).Inc()
			e = &wire.Error{Type: wire.ErrBusy, Message: fmt.Sprintf("no execution slot came free within %v; retry shortly", maxWait)}
		case draining:
			m.busy.WithLabelValues(cn.client, busyDraining).Inc()
			e = &wire.Error{Type: wire.ErrBusy, Message: "the server is shutting down; retry"}
		case clientFull:
			m.busy.WithLabelValues(cn.client, busyClientShare).Inc()
			e = &wire.Error{Type: wire.ErrBusy, Message: fmt.Sprintf("client %s already has its share of the queue (%d places) waiting; retry shortly", cn.client, s.cfg.ClientQueue)}
		default:
			m.busy.WithLabelValues(cn.client, busyQueueFull).Inc()
			e = &wire.Error{Type: wire.ErrBusy, Message: "the server is at capacity; retry shortly"}
		}
		log = log.WithField("queue_ms", queueMS)
		finish(Outcome{Err: e, Done: wire.Done{ExitReason: wire.ExitError, ExitCode: -1, QueueMS: queueMS}})
		return
	}
	slot := &slotHold{admit: s.admit, release: release}
	defer slot.end()
	log = log.WithField("queue_ms", queueMS)
	log.WithField("script_bytes", len(req.Script)).Info("execution started")
	stdout := m.outputBytes.WithLabelValues(cn.client, outStdout)
	stderr := m.outputBytes.WithLabelValues(cn.client, outStderr)
	x := &Execution{
		ID:     xid,
		Script: req.Script,
		Args:   req.Args,
		Files:  req.Files,
		Limits: limits,
		Log:    log,
		Stdout: func(b []byte) {
			stdout.Add(float64(len(b)))
			cn.send(id, wire.TypeStdout, wire.Chunk{Data: b})
		},
		Stderr: func(b []byte) {
			stderr.Add(float64(len(b)))
			cn.send(id, wire.TypeStderr, wire.Chunk{Data: b})
		},
		Images: cn.features.Has(wire.FeatureImages),
	}
	answered := false
	answer := func(out Outcome) {
		answered = true
		out.Done.QueueMS = queueMS
		m.duration.WithLabelValues(s.engine.Name(), outcomeLabel(out)).Observe(float64(out.Done.WallMS) / 1000)
		finish(out)
	}
	// The answer can go out before the sandbox is torn down; the slot is
	// released once the execution's processes are gone (Gone, from an
	// engine that knows), else once Run has returned, so the teardown's
	// CPU time still counts against the slots.
	x.Answer = answer
	x.Gone = slot.gone
	out := s.engine.Run(ctx, x)
	if !answered {
		answer(out)
	}
}

// slotHold is an admitted execution's slot. It is given back when the
// execution's processes are gone (gone), if admission lets it linger, else
// when the execution ends (end).
type slotHold struct {
	admit   *admission
	release func() // the slot's, from enter

	mu        sync.Mutex
	ended     bool
	lingering bool
}

func (h *slotHold) gone() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.ended || h.lingering || !h.admit.linger() {
		return
	}
	h.lingering = true
	h.release()
}

func (h *slotHold) end() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.ended = true
	if h.lingering {
		h.admit.unlinger()
		return
	}
	h.release()
}
