// Package client is the Go client of the supervisor protocol (the spec is
// wire/PROTOCOL.md). Anyone may import it: the gateway uses it, and
// so may any internal service on the host that is allowed onto the supervisor
// socket. It imports only wire, logrus and the standard library;
// never the supervisor, the jail or the gateway.
//
// One Client keeps one Unix-socket connection, dialled on first use and again
// after it is lost, and multiplexes any number of concurrent executions on it
// by request id. Transport failures (no supervisor, connection lost, protocol
// violation) are errors that wrap ErrUnavailable; what the script did is an
// Outcome, never an error.
//
// With the "io" feature (wire.FeatureIO in Config.Features) an Execute may
// carry Args (main(**args)) and Files (written before the script runs), and
// the Outcome carries the files the script left in output/; see
// ExampleClient_Execute_argsAndFiles.
//
// Execute waits for the outcome (with an optional callback per output chunk);
// Stream is the same execution as a range-over-func loop over the output as
// it is written, then the outcome (see its example). With wire.FeatureImages
// the Outcome carries the figures a script left open (ExampleOutcome_images).
//
// The examples are run by go test against a real supervisor and gateway
// that the package's TestMain starts (internal/stack; root and make setup
// needed), so their output is what the service answers.
package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"iter"
	"net"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/wire"
)

const (
	defaultDialTimeout = 2 * time.Second
	defaultSoftware    = "python-executor-client"

	// cancelTimeout bounds the write of a cancel frame: a supervisor that
	// takes no input for that long is not going to act on it either.
	cancelTimeout = 10 * time.Second
)

// ErrUnavailable is wrapped by every transport failure: the socket cannot be
// dialled, the hello is refused or times out, or the connection is lost or
// broken by a protocol violation while a call is in flight. A call that fails
// with it may be retried; an execution in flight when it happened may or may
// not have run.
var ErrUnavailable = errors.New("supervisor unavailable")

// ErrClosed is wrapped (together with ErrUnavailable) by the errors of calls
// made on, or interrupted by, a closed Client.
var ErrClosed = errors.New("client closed")

// ErrFeatureNotAgreed is returned by a call that needs an optional feature
// the supervisor did not agree to on the connection (see Client.Features).
var ErrFeatureNotAgreed = errors.New("feature not agreed with the supervisor")

// errClosed is what calls return once the client is closed.
var errClosed = fmt.Errorf("%w: %w", ErrUnavailable, ErrClosed)

// Config configures a Client.
type Config struct {
	// SocketPath is the supervisor's Unix socket.
	SocketPath string
	// DialTimeout bounds connecting plus the hello exchange; 0 (or less)
	// means 2s.
	DialTimeout time.Duration
	// MaxFrame is the largest frame body accepted from the supervisor, and
	// the largest execute body sent to it; 0 (or less) means
	// wire.DefaultMaxFrame.
	MaxFrame int
	// Software is sent in the hello (informational); "" means
	// "python-executor-client".
	Software string
	// Logger receives connection-level events (connection lost, frames
	// dropped); nil means discard.
	Logger *logrus.Entry
	// ServerUID is the uid the process listening on SocketPath must run
	// as, checked with SO_PEERCRED before anything is sent: a socket
	// planted by someone else gets no scripts. 0 means root, the
	// supervisor's uid.
	ServerUID int
	// Features are the optional protocol features (wire.FeatureSet) to
	// ask for in each hello; nil asks for none, the base protocol. Ask only
	// for features whose messages the caller's version of this package
	// handles: a feature the supervisor agrees to may change what it sends.
	Features []string
}

// Event is one piece of output streamed while an execution runs.
type Event struct {
	// Type is wire.TypeStdout or wire.TypeStderr.
	Type wire.Type
	// Data is the chunk as the supervisor sent it; the callee may keep it.
	Data []byte
}

// StreamEvent is one item of Stream: an output chunk, or the execution's
// end.
type StreamEvent struct {
	// Event is the chunk; on the last item its Type is wire.TypeDone and
	// Data is nil.
	Event
	// Outcome is set on the last item only.
	Outcome *Outcome
}

// Outcome is how an execution ended. Exactly one of Result and Err is
// non-nil.
type Outcome struct {
	// Result is the raw JSON text of main()'s return value, untouched; nil
	// when Err is set.
	Result []byte
	// Err is the execution's failure (the script raised, timed out, the
	// supervisor was busy, ...): an outcome of the execution, not a transport
	// failure. A done without a result or error from the supervisor is
	// reported as wire.ErrInternal.
	Err *wire.Error
	// Files are the files the script left in output/ (with a result
	// only; wire.FeatureIO), FilesTruncated whether some were left out by
	// a cap. Ask for the feature in Config.Features to send args and files
	// and to get these.
	Files          []wire.File
	FilesTruncated bool
	// Stdout is every stdout chunk joined, as capped by the supervisor.
	Stdout []byte
	// Stderr is every stderr chunk joined, as capped by the supervisor.
	Stderr []byte
	// Done carries the execution's statistics and exit reason.
	Done wire.Done
	// Images are the figures main() left open, as PNGs (only on a
	// connection that agreed to wire.FeatureImages: list it in
	// Config.Features); ImagesTruncated says some were left out for the
	// supervisor's caps.
	Images          []wire.Image
	ImagesTruncated bool
}

// Client is a connection to the supervisor, shared by concurrent callers. The
// zero value is not usable; call New.
type Client struct {
	cfg  Config // defaults applied
	log  *logrus.Entry
	want wire.FeatureSet // cfg.Features as a set

	mu      sync.Mutex // guards cn, dialing, closed
	cn      *conn      // the current connection; may be dead
	dialing *dialCall  // the dial in progress, if any
	closed  bool
}

// dialCall is one dial shared by every caller that needs a connection while
// it runs.
type dialCall struct {
	done chan struct{} // closed when cn or err is set
	cn   *conn
	err  error
}

// New returns a client for cfg. It does not dial: the connection is made on
// first use and made again on the first use after it is lost, so a restarted
// supervisor is picked up without intervention.
func New(cfg Config) *Client {
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = defaultDialTimeout
	}
	if cfg.MaxFrame <= 0 {
		cfg.MaxFrame = wire.DefaultMaxFrame
	}
	if cfg.Software == "" {
		cfg.Software = defaultSoftware
	}
	log := cfg.Logger
	if log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		log = logrus.NewEntry(l)
	}
	return &Client{cfg: cfg, want: wire.NewFeatureSet(cfg.Features...), log: log.WithField("socket", cfg.SocketPath)}
}

// Execute runs req on the supervisor and waits for its done frame. onEvent,
// if not nil, is called in Execute's goroutine with each stdout and stderr
// chunk, in order, before Execute returns.
//
// The error is nil whenever the supervisor answered, whatever the script did
// (see Outcome.Err). Otherwise it wraps ErrUnavailable (a transport failure),
// is ctx.Err() (the caller gave up: a cancel is sent for the execution and its
// later frames are dropped), or wraps wire.ErrFrameTooLarge (req does not fit
// in MaxFrame; nothing was sent). When the connection turns out to be dead
// before the request was written in full, Execute retries once on a new
// connection: the supervisor cannot have started it.
func (c *Client) Execute(ctx context.Context, req wire.Execute, onEvent func(Event)) (*Outcome, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	body, err := wire.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode execute: %w", err)
	}
	if len(body) > c.cfg.MaxFrame {
		return nil, fmt.Errorf("encode execute: %w: %d bytes, limit %d", wire.ErrFrameTooLarge, len(body), c.cfg.MaxFrame)
	}
	for attempt := 0; ; attempt++ {
		cn, err := c.connect(ctx)
		if err != nil {
			return nil, err
		}
		id, cl, err := cn.start(ctx, body, onEvent != nil)
		if err == nil {
			return cn.wait(ctx, id, cl, onEvent)
		}
		if ctx.Err() != nil || attempt > 0 {
			return nil, err
		}
	}
}

// Stream runs req like Execute and yields its output as the supervisor sends
// it: one item per stdout or stderr chunk, in order, then one last item of
// type wire.TypeDone that carries the Outcome (whose Stdout and Stderr hold
// every chunk again, joined). When Execute would return an error, that error
// is yielded instead of the last item, with a zero StreamEvent. Leaving the
// loop early cancels the execution.
//
// The loop body runs in the caller's goroutine; while it works, later chunks
// wait in the client, never in the supervisor. They are bounded by the
// output caps the supervisor enforces (wire.Limits.OutputBytes per stream).
func (c *Client) Stream(ctx context.Context, req wire.Execute) iter.Seq2[StreamEvent, error] {
	return func(yield func(StreamEvent, error) bool) {
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		stopped := false
		out, err := c.Execute(ctx, req, func(ev Event) {
			if stopped {
				return
			}
			if !yield(StreamEvent{Event: ev}, nil) {
				// Execute returns ctx.Err() promptly and cancels the
				// execution on the supervisor.
				stopped = true
				cancel()
			}
		})
		switch {
		case stopped:
		case err != nil:
			yield(StreamEvent{}, err)
		default:
			yield(StreamEvent{Event: Event{Type: wire.TypeDone}, Outcome: out}, nil)
		}
	}
}

// Status asks the supervisor to describe itself. Errors are as for Execute.
func (c *Client) Status(ctx context.Context) (*wire.Status, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		cn, err := c.connect(ctx)
		if err != nil {
			return nil, err
		}
		st, sent, err := request(ctx, cn, wire.TypeStatusRequest, &cn.statusWaiters)
		if err == nil || sent || ctx.Err() != nil || attempt > 0 {
			return st, err
		}
	}
}

// Metrics asks the supervisor for its own metrics (feature
// wire.FeatureMetrics, which Config.Features must list): the Prometheus text
// exposition, in the format m.Format names. A connection without the
// feature agreed fails with ErrFeatureNotAgreed; other errors are as for
// Status.
func (c *Client) Metrics(ctx context.Context) (*wire.Metrics, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		cn, err := c.connect(ctx)
		if err != nil {
			return nil, err
		}
		if !cn.features.Has(wire.FeatureMetrics) {
			return nil, fmt.Errorf("metrics: %w: %q", ErrFeatureNotAgreed, wire.FeatureMetrics)
		}
		m, sent, err := request(ctx, cn, wire.TypeMetricsRequest, &cn.metricsWaiters)
		if err == nil || sent || ctx.Err() != nil || attempt > 0 {
			return m, err
		}
	}
}

// Features returns the optional features the supervisor agreed to use on the
// current connection (dialling one if there is none): the empty set when it
// offers none of Config.Features or predates features. A reconnection
// negotiates again, so a caller that depends on a feature checks it for the
// connection its call goes out on; errors are as for Status.
func (c *Client) Features(ctx context.Context) (wire.FeatureSet, error) {
	if err := ctx.Err(); err != nil {
		return wire.FeatureSet{}, err
	}
	cn, err := c.connect(ctx)
	if err != nil {
		return wire.FeatureSet{}, err
	}
	return cn.features, nil
}

// Close closes the connection. Calls in flight, and calls made afterwards,
// fail with an error wrapping ErrClosed and ErrUnavailable. Close is
// idempotent and always returns nil.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	cn := c.cn
	c.cn = nil
	c.mu.Unlock()
	if cn != nil {
		cn.fail(errClosed)
	}
	return nil
}

// connect returns a live connection, dialling one if needed. Concurrent
// callers share one dial; each waits for it only as long as its ctx allows.
func (c *Client) connect(ctx context.Context) (*conn, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, errClosed
	}
	if c.cn != nil && c.cn.alive() {
		cn := c.cn
		c.mu.Unlock()
		return cn, nil
	}
	d := c.dialing
	if d == nil {
		d = &dialCall{done: make(chan struct{})}
		c.dialing = d
		go c.dial(d)
	}
	c.mu.Unlock()
	select {
	case <-d.done:
		return d.cn, d.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// dial runs one dial for d. It is bounded by DialTimeout, not by any
// caller's context, so one impatient caller does not spoil it for others.
func (c *Client) dial(d *dialCall) {
	cn, err := c.open()
	c.mu.Lock()
	c.dialing = nil
	if err == nil && c.closed {
		cn.fail(errClosed)
		cn, err = nil, errClosed
	}
	if err == nil {
		c.cn = cn
	}
	d.cn, d.err = cn, err
	c.mu.Unlock()
	close(d.done)
}

// open dials the socket, exchanges hellos and starts the reader.
func (c *Client) open() (*conn, error) {
	deadline := time.Now().Add(c.cfg.DialTimeout)
	dialer := net.Dialer{Deadline: deadline}
	nc, err := dialer.Dial("unix", c.cfg.SocketPath)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if err := checkServer(nc, c.cfg.ServerUID); err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	br := bufio.NewReader(nc)
	features, err := c.hello(nc, br, deadline)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("%w: hello: %w", ErrUnavailable, err)
	}
	cn := &conn{
		nc:       nc,
		br:       br,
		limit:    c.cfg.MaxFrame,
		features: features,
		log:      c.log,
		wsem:     make(chan struct{}, 1),
		dead:     make(chan struct{}),
		calls:    make(map[uint32]*call),
	}
	go cn.readLoop()
	return cn, nil
}

// hello sends the client's hello and reads the supervisor's, all before
// deadline, and returns the features agreed on. A refusal is returned as the
// supervisor's *wire.Error.
func (c *Client) hello(nc net.Conn, br *bufio.Reader, deadline time.Time) (wire.FeatureSet, error) {
	var none wire.FeatureSet
	if err := nc.SetDeadline(deadline); err != nil {
		return none, err
	}
	f, err := wire.NewFrame(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: c.cfg.Software, Features: c.want.Names()})
	if err != nil {
		return none, err
	}
	if err := wire.WriteFrame(nc, f); err != nil {
		return none, fmt.Errorf("write: %w", err)
	}
	f, err = wire.ReadFrame(br, c.cfg.MaxFrame)
	if err != nil {
		return none, fmt.Errorf("read: %w", err)
	}
	var h wire.Hello
	switch f.Type {
	case wire.TypeError:
		// Read whatever the frame's version: a supervisor of another
		// version still says why it refuses.
		var e wire.Error
		if err := wire.Unmarshal(f.Body, &e); err != nil {
			return none, err
		}
		return none, &e
	case wire.TypeHello:
		if err := wire.Unmarshal(f.Body, &h); err != nil {
			return none, err
		}
		if f.RequestID != 0 {
			return none, &wire.ProtocolError{Reason: fmt.Sprintf("hello on request %d", f.RequestID)}
		}
		if h.Version != int(wire.Version) || f.Version != wire.Version {
			return none, fmt.Errorf("supervisor speaks protocol version %d (frame version %d), client %d", h.Version, f.Version, wire.Version)
		}
	default:
		return none, &wire.ProtocolError{Reason: "expected hello, got " + f.Type.String()}
	}
	if err := nc.SetDeadline(time.Time{}); err != nil {
		return none, err
	}
	// The supervisor answers with a subset of what was asked; a name it
	// adds anyway is ignored, like any unknown feature, rather than
	// trusted: the client never uses what it did not ask for.
	return c.want.Intersect(h.Features), nil
}

// conn is one connection to the supervisor, after the hello.
type conn struct {
	nc    net.Conn
	br    *bufio.Reader // reads nc; used by readLoop only
	limit int
	// features are the optional features agreed in the hello; fixed for
	// the connection's life.
	features wire.FeatureSet
	log      *logrus.Entry
	wsem     chan struct{} // a token: whoever holds it may write one whole frame to nc
	dead     chan struct{} // closed by fail

	mu            sync.Mutex // guards err, calls, nextID, statusWaiters and every call's fields
	err           error      // why the connection failed (wraps ErrUnavailable); set once by fail
	calls         map[uint32]*call
	nextID        uint32
	statusWaiters []chan *wire.Status // one per status_request sent and not yet answered, oldest first
	// metricsWaiters: as statusWaiters, for metrics_request (feature metrics).
	metricsWaiters []chan *wire.Metrics
}

// call is one execution on a connection.
type call struct {
	events bool          // queue events for the caller's onEvent
	notify chan struct{} // capacity 1: events were queued or the call finished

	// Guarded by conn.mu.
	queued    []Event
	out       Outcome
	answered  bool // a result or an error arrived
	finished  bool // done arrived; the call is out of conn.calls
	abandoned bool // the caller gave up; frames are dropped until done
}

// alive reports whether the connection has not failed.
func (cn *conn) alive() bool {
	select {
	case <-cn.dead:
		return false
	default:
		return true
	}
}

// fail records why the connection is unusable, wakes every waiter and closes
// the socket. The first cause wins; fail returns it.
func (cn *conn) fail(err error) error {
	cn.mu.Lock()
	if cn.err != nil {
		err = cn.err
		cn.mu.Unlock()
		return err
	}
	cn.err = err
	close(cn.dead)
	cn.mu.Unlock()
	cn.nc.Close()
	return err
}

// failure returns why the connection failed.
func (cn *conn) failure() error {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.err
}

// write writes f whole. before, if not nil, runs once the right to write is
// held and before the first byte goes out. If ctx ends while the frame is
// blocked, the write is interrupted: with nothing written the connection
// stays usable and ctx.Err() is returned; a partly written frame has broken
// the stream, so the connection fails. A returned error means the peer did
// not get the whole frame.
func (cn *conn) write(ctx context.Context, f wire.Frame, before func()) error {
	b := wire.AppendFrame(nil, f)
	select {
	case cn.wsem <- struct{}{}:
	case <-cn.dead:
		return cn.failure()
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-cn.wsem }()
	if !cn.alive() {
		return cn.failure()
	}
	if before != nil {
		before()
	}
	if err := cn.nc.SetWriteDeadline(time.Time{}); err != nil {
		return cn.fail(fmt.Errorf("%w: write: %w", ErrUnavailable, err))
	}
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		cn.nc.SetWriteDeadline(time.Unix(1, 0))
		close(interrupted)
	})
	n, err := cn.nc.Write(b)
	if !stop() {
		// The interrupt ran or is running: let it finish before the next
		// writer clears the deadline.
		<-interrupted
	}
	if err == nil {
		return nil
	}
	if n == 0 && ctx.Err() != nil {
		return ctx.Err()
	}
	ferr := cn.fail(fmt.Errorf("%w: write: %w", ErrUnavailable, err))
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return ferr
}

// start registers a new execution and sends its execute frame.
func (cn *conn) start(ctx context.Context, body []byte, events bool) (uint32, *call, error) {
	cl := &call{events: events, notify: make(chan struct{}, 1)}
	cn.mu.Lock()
	if cn.err != nil {
		err := cn.err
		cn.mu.Unlock()
		return 0, nil, err
	}
	id := cn.nextID
	for {
		id++
		if _, live := cn.calls[id]; id != 0 && !live {
			break
		}
	}
	cn.nextID = id
	cn.calls[id] = cl
	cn.mu.Unlock()

	f := wire.Frame{RequestID: id, Type: wire.TypeExecute, Version: wire.Version, Body: body}
	if err := cn.write(ctx, f, nil); err != nil {
		cn.mu.Lock()
		delete(cn.calls, id)
		cn.mu.Unlock()
		return 0, nil, err
	}
	return id, cl, nil
}

// wait delivers cl's events until its done frame, ctx's end or the
// connection's failure.
func (cn *conn) wait(ctx context.Context, id uint32, cl *call, onEvent func(Event)) (*Outcome, error) {
	for {
		select {
		case <-cl.notify:
		case <-cn.dead:
		case <-ctx.Done():
		}
		cn.mu.Lock()
		events := cl.queued
		cl.queued = nil
		finished, out, failed := cl.finished, cl.out, cn.err
		gaveUp := !finished && failed == nil && ctx.Err() != nil
		if gaveUp {
			cl.abandoned = true
		}
		cn.mu.Unlock()
		switch {
		case finished:
			for _, ev := range events {
				onEvent(ev)
			}
			return &out, nil
		case failed != nil:
			return nil, failed
		case gaveUp:
			go cn.cancel(id)
			return nil, ctx.Err()
		}
		for _, ev := range events {
			onEvent(ev)
		}
	}
}

// cancel tells the supervisor to stop execution id. It runs on its own so the
// caller that gave up returns at once; a failure needs no report (the
// connection is either failed already or the execution ends at its deadline).
func (cn *conn) cancel(id uint32) {
	ctx, stop := context.WithTimeout(context.Background(), cancelTimeout)
	defer stop()
	f, err := wire.NewFrame(id, wire.TypeCancel, wire.Empty{})
	if err != nil {
		return
	}
	cn.write(ctx, f, nil)
}

// request sends one body-less request of type t (status_request,
// metrics_request) on request id 0 and waits for its answer, handed out by
// dispatch through *waiters. sent reports whether the request reached the
// supervisor in full. The caller holds no lock; waiters is guarded by cn.mu.
//
// Answers carry no request id; they are handed out oldest waiter first.
// Waiters are queued while holding the right to write, so the queue is in
// the order the requests went out, and one that gives up stays queued to
// take its own answer.
func request[T any](ctx context.Context, cn *conn, t wire.Type, waiters *[]chan *T) (v *T, sent bool, err error) {
	f, err := wire.NewFrame(0, t, wire.Empty{})
	if err != nil {
		return nil, false, err
	}
	ch := make(chan *T, 1)
	err = cn.write(ctx, f, func() {
		cn.mu.Lock()
		*waiters = append(*waiters, ch)
		cn.mu.Unlock()
	})
	if err != nil {
		cn.mu.Lock()
		for i, w := range *waiters {
			if w == ch {
				*waiters = append((*waiters)[:i], (*waiters)[i+1:]...)
				break
			}
		}
		cn.mu.Unlock()
		return nil, false, err
	}
	select {
	case v := <-ch:
		return v, true, nil
	case <-cn.dead:
		return nil, true, cn.failure()
	case <-ctx.Done():
		return nil, true, ctx.Err()
	}
}

// readLoop reads and dispatches frames until the connection fails, then logs
// why. It is the only place that logs.
func (cn *conn) readLoop() {
	for {
		f, err := wire.ReadFrame(cn.br, cn.limit)
		if err != nil {
			err = fmt.Errorf("read: %w", err)
		} else {
			var dropped bool
			dropped, err = cn.dispatch(f)
			if err == nil {
				if dropped {
					cn.log.WithFields(logrus.Fields{"request_id": f.RequestID, "type": f.Type.String()}).Debug("dropped frame for no live request")
				}
				continue
			}
		}
		cause := cn.fail(fmt.Errorf("%w: %w", ErrUnavailable, err))
		cn.mu.Lock()
		inFlight := len(cn.calls)
		cn.mu.Unlock()
		log := cn.log.WithError(cause).WithField("in_flight", inFlight)
		if errors.Is(cause, ErrClosed) {
			log.Debug("supervisor connection closed")
		} else {
			log.Warn("supervisor connection lost")
		}
		return
	}
}

// dispatch hands one frame to whoever waits for it. dropped reports a frame
// for a request nobody waits for; an error is a protocol violation, after
// which the connection must be closed.
func (cn *conn) dispatch(f wire.Frame) (dropped bool, err error) {
	if f.Version != wire.Version {
		return false, &wire.ProtocolError{Reason: fmt.Sprintf("%s frame version %d, agreed %d", f.Type, f.Version, wire.Version)}
	}
	switch f.Type {
	case wire.TypeStatus:
		return deliver(cn, f, &cn.statusWaiters)
	case wire.TypeMetrics:
		if !cn.features.Has(wire.FeatureMetrics) {
			return false, &wire.ProtocolError{Reason: "metrics frame without the metrics feature"}
		}
		return deliver(cn, f, &cn.metricsWaiters)
	case wire.TypeError:
		var e wire.Error
		if err := wire.Unmarshal(f.Body, &e); err != nil {
			return false, err
		}
		if f.RequestID == 0 {
			// The supervisor refuses the connection and closes it.
			return false, fmt.Errorf("supervisor: %w", &e)
		}
		return cn.deliver(f, func(cl *call) error {
			if cl.answered {
				return &wire.ProtocolError{Reason: fmt.Sprintf("second result or error for request %d", f.RequestID)}
			}
			cl.answered, cl.out.Err = true, &e
			return nil
		})
	case wire.TypeResult:
		var r wire.Result
		if err := wire.Unmarshal(f.Body, &r); err != nil {
			return false, err
		}
		return cn.deliver(f, func(cl *call) error {
			if cl.answered {
				return &wire.ProtocolError{Reason: fmt.Sprintf("second result or error for request %d", f.RequestID)}
			}
			cl.answered, cl.out.Result = true, r.JSON
			cl.out.Files, cl.out.FilesTruncated = r.Files, r.FilesTruncated
			cl.out.Images, cl.out.ImagesTruncated = r.Images, r.ImagesTruncated
			return nil
		})
	case wire.TypeStdout, wire.TypeStderr:
		var ch wire.Chunk
		if err := wire.Unmarshal(f.Body, &ch); err != nil {
			return false, err
		}
		return cn.deliver(f, func(cl *call) error {
			if f.Type == wire.TypeStdout {
				cl.out.Stdout = append(cl.out.Stdout, ch.Data...)
			} else {
				cl.out.Stderr = append(cl.out.Stderr, ch.Data...)
			}
			if cl.events {
				cl.queued = append(cl.queued, Event{Type: f.Type, Data: ch.Data})
			}
			return nil
		})
	case wire.TypeDone:
		var d wire.Done
		if err := wire.Unmarshal(f.Body, &d); err != nil {
			return false, err
		}
		return cn.deliver(f, func(cl *call) error {
			cl.out.Done = d
			if cl.out.Err == nil && cl.out.Result == nil {
				cl.out.Err = &wire.Error{Type: wire.ErrInternal, Message: "the supervisor sent no result or error"}
			}
			if cl.out.Err != nil {
				// An outcome is a result or an error, never parts of both.
				cl.out.Result, cl.out.Files, cl.out.FilesTruncated = nil, nil, false
				cl.out.Images, cl.out.ImagesTruncated = nil, false
			}
			cl.finished = true
			return nil
		})
	case wire.TypeHello, wire.TypeExecute, wire.TypeCancel, wire.TypeStatusRequest, wire.TypeMetricsRequest:
		return false, &wire.ProtocolError{Reason: fmt.Sprintf("unexpected %s from the supervisor", f.Type)}
	default:
		return false, &wire.ProtocolError{Reason: fmt.Sprintf("unknown message type %s", f.Type)}
	}
}

// deliver applies an execution frame to its call. A frame for no live call,
// or for one its caller gave up, is dropped; done removes the call.
func (cn *conn) deliver(f wire.Frame, apply func(*call) error) (dropped bool, err error) {
	cn.mu.Lock()
	cl := cn.calls[f.RequestID]
	if cl == nil {
		cn.mu.Unlock()
		return true, nil
	}
	if f.Type == wire.TypeDone {
		delete(cn.calls, f.RequestID)
	}
	if cl.abandoned {
		cn.mu.Unlock()
		return true, nil
	}
	err = apply(cl)
	notify := cl.finished || (cl.events && len(cl.queued) > 0)
	cn.mu.Unlock()
	if err != nil {
		return false, err
	}
	if notify {
		select {
		case cl.notify <- struct{}{}:
		default:
		}
	}
	return false, nil
}

// checkServer reports an error unless the peer on nc runs as uid.
func checkServer(nc net.Conn, uid int) error {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return errors.New("not a unix socket")
	}
	peer, _, err := wire.PeerCred(uc)
	if err != nil {
		return err
	}
	if peer != uid {
		return fmt.Errorf("the socket's server runs as uid %d, want %d", peer, uid)
	}
	return nil
}

// deliver hands an answer on request id 0 (status, metrics: answered in the
// order asked) to the oldest of its waiters; with none left (the asker gave
// up) it is dropped.
func deliver[T any](cn *conn, f wire.Frame, waiters *[]chan *T) (dropped bool, err error) {
	if f.RequestID != 0 {
		return false, &wire.ProtocolError{Reason: fmt.Sprintf("%s on request %d", f.Type, f.RequestID)}
	}
	v := new(T)
	if err := wire.Unmarshal(f.Body, v); err != nil {
		return false, err
	}
	cn.mu.Lock()
	if len(*waiters) == 0 {
		cn.mu.Unlock()
		return true, nil
	}
	ch := (*waiters)[0]
	*waiters = (*waiters)[1:]
	cn.mu.Unlock()
	ch <- v
	return false, nil
}
