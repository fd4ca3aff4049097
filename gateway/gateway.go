package gateway

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/debug"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/cloudlog"
	"github.com/python-executor/python-executor/wire"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"
)

// Executor runs executions and reports the supervisor's status.
// *client.Client implements it; tests use a fake.
//
// Execute must return when ctx is done (the client went away, or the
// gateway gave up), with an error wrapping ctx.Err(). Transport failures
// must wrap client.ErrUnavailable. An execution's own failure (the script
// raised, timed out, ...) is not an error: it is Outcome.Err.
type Executor interface {
	Execute(ctx context.Context, req wire.Execute, onEvent func(client.Event)) (*client.Outcome, error)
	Status(ctx context.Context) (*wire.Status, error)
}

var _ Executor = (*client.Client)(nil)

// Gateway is the HTTP server. Create it with New, then call Run or Serve
// once.
type Gateway struct {
	cfg    Config
	exec   Executor
	log    *logrus.Entry
	srv    *fasthttp.Server
	router *router.Router

	// base is the parent of every execution's context; stopExec cancels it
	// when the shutdown grace period is over.
	base     context.Context
	stopExec context.CancelCauseFunc
	// running counts in-flight executions, so shutdown can wait for them.
	running atomic.Int64
	// draining is set when shutdown begins: /health answers 503 and new
	// executions are refused while the running ones finish.
	draining atomic.Bool
	// metrics are served on Config.MetricsAddr (metrics.go).
	metrics *gatewayMetrics
	// keys are the API keys in force; nil when keys are off (keys.go).
	keys *Keys
}

// Causes of an execution's context ending, other than the execution's own
// end.
var (
	errClientGone     = errors.New("client went away")
	errShuttingDown   = errors.New("gateway shutting down")
	errSupervisorLate = errors.New("supervisor did not answer in time")
)

// New returns a gateway serving cfg with exec. cfg must have passed Validate.
func New(cfg Config, exec Executor, log *logrus.Entry) *Gateway {
	g := &Gateway{cfg: cfg, exec: exec, log: log, keys: newKeys(cfg, log)}
	g.base, g.stopExec = context.WithCancelCause(context.Background())
	g.metrics = newGatewayMetrics(g)

	r := router.New()
	// The matched route pattern labels the HTTP metrics.
	r.SaveMatchedRoutePath = true
	// A strict API: no redirects to "fixed" paths, just 404.
	r.RedirectTrailingSlash = false
	r.RedirectFixedPath = false
	r.HandleMethodNotAllowed = true
	r.HandleOPTIONS = true
	r.GlobalOPTIONS = func(ctx *fasthttp.RequestCtx) { ctx.SetStatusCode(fasthttp.StatusNoContent) }
	r.NotFound = func(ctx *fasthttp.RequestCtx) {
		writeError(ctx, &apiError{Type: errNotFound, Message: "no such endpoint"}, nil, nil)
	}
	r.MethodNotAllowed = func(ctx *fasthttp.RequestCtx) {
		// The router has set Allow already.
		writeError(ctx, &apiError{Type: errMethodNotAllowed,
			Message: "method not allowed; allowed: " + string(ctx.Response.Header.Peek("Allow"))}, nil, nil)
	}
	r.PanicHandler = g.handlePanic
	r.POST("/execute", g.handleExecute)
	r.GET("/health", g.handleHealth)
	r.HEAD("/health", g.handleHealth)
	r.GET("/openapi.json", g.handleOpenAPI)
	r.HEAD("/openapi.json", g.handleOpenAPI)
	if cfg.Playground {
		g.routePlayground(r)
	}
	r.POST("/mcp", g.newMCPHandler())
	g.router = r

	g.srv = &fasthttp.Server{
		Handler:                      g.serveHTTP,
		ErrorHandler:                 g.handleServerError,
		ExpectHandler:                g.handleExpect,
		NoDefaultServerHeader:        true,
		ReadTimeout:                  cfg.ReadTimeout,
		WriteTimeout:                 cfg.WriteTimeout,
		IdleTimeout:                  cfg.IdleTimeout,
		Concurrency:                  cfg.MaxConns,
		MaxRequestBodySize:           cfg.MaxBodyBytes + ioBodyRoom(),
		DisablePreParseMultipartForm: true,
		CloseOnShutdown:              true,
		SecureErrorLogMessage:        true,
		TCPKeepalive:                 true,
		Logger:                       fasthttpLogger{log},
	}
	return g
}

// Run listens on Config.Addr, and on Config.MetricsAddr unless metrics
// are off, and serves until ctx is cancelled; see Serve and ServeMetrics.
// A metrics address that cannot be listened on stops it: a deployment that
// asked for metrics should not run silently without them.
func (g *Gateway) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", g.cfg.Addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if !g.cfg.MetricsEnabled() {
		return g.Serve(ctx, ln)
	}
	mln, err := net.Listen("tcp", g.cfg.MetricsAddr)
	if err != nil {
		ln.Close()
		return fmt.Errorf("metrics listen: %w", err)
	}
	mctx, stopMetrics := context.WithCancel(context.WithoutCancel(ctx))
	merr := make(chan error, 1)
	go func() { merr <- g.ServeMetrics(mctx, mln) }()
	err = g.Serve(ctx, ln)
	// Metrics are served through the drain, then stop with the gateway.
	stopMetrics()
	if e := <-merr; e != nil && err == nil {
		err = e
	}
	return err
}

// Serve serves HTTP on ln until ctx is cancelled, then drains: /health
// answers 503 at once and new executions get unavailable, while the
// executions in flight may finish for up to Config.ShutdownTimeout; then it
// cancels those still running, stops listening and closes the connections.
// It returns nil after a clean shutdown, and an error when serving failed or
// the drain limit ran out.
func (g *Gateway) Serve(ctx context.Context, ln net.Listener) error {
	if g.keys != nil {
		// Keys on: they must load before anything is served, else nothing
		// could be admitted.
		if _, err := g.keys.Reload(); err != nil {
			ln.Close()
			return fmt.Errorf("api keys: %w", err)
		}
		if n := g.keys.count(); n == 0 {
			// Fail closed, but say so: an empty file is more likely a
			// mistake than a wish to refuse everyone.
			g.log.Warn("api keys on, but none is listed: every request to /execute and /mcp is refused")
		} else {
			g.log.WithField("keys", n).Info("api keys on: /execute and /mcp need a key")
		}
		stop := make(chan struct{})
		defer close(stop)
		go g.keys.watch(stop, g.cfg.KeysPoll)
	}
	g.log.WithField("addr", ln.Addr().String()).Info("gateway listening")
	errc := make(chan error, 1)
	go func() { errc <- g.srv.Serve(lingerListener{Listener: ln, perIP: newPerIPLimit(g.cfg.MaxConnsPerIP)}) }()
	select {
	case err := <-errc:
		g.stopExec(errShuttingDown)
		if err != nil {
			return fmt.Errorf("serve: %w", err)
		}
		return errors.New("serve: stopped unexpectedly")
	case <-ctx.Done():
	}
	g.draining.Store(true)
	g.log.WithFields(logrus.Fields{"running": g.running.Load(), "drain_timeout": g.cfg.ShutdownTimeout.String()}).Info("gateway draining")
	// Still listening: a load balancer's health check sees 503, and a
	// request that arrives now gets a clear unavailable rather than a
	// refused connection.
	drained := g.waitRunning(g.cfg.ShutdownTimeout)
	var drainErr error
	if !drained {
		drainErr = fmt.Errorf("shutdown: %d executions still running after the drain limit %v; cancelled", g.running.Load(), g.cfg.ShutdownTimeout)
		g.log.WithField("running", g.running.Load()).Warn("drain limit reached: cancelling the executions in flight")
		g.stopExec(errShuttingDown)
		// Give the cancelled executions a moment to answer.
		g.waitRunning(time.Second)
	}
	g.log.Info("gateway shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownLinger)
	defer cancel()
	err := g.srv.ShutdownWithContext(sctx)
	g.stopExec(errShuttingDown)
	if drainErr != nil {
		return drainErr
	}
	if err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// shutdownLinger bounds closing the connections once the executions are
// over: answers being written, keep-alive connections to close.
const shutdownLinger = time.Second

// waitRunning waits up to d for the in-flight executions to end and reports
// whether they did.
func (g *Gateway) waitRunning(d time.Duration) bool {
	for end := time.Now().Add(d); g.running.Load() > 0; {
		if !time.Now().Before(end) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
	return true
}

// request is the per-request state the middleware keeps in the RequestCtx.
type request struct {
	id  string
	log *logrus.Entry
	// fields are added to the access log line.
	fields logrus.Fields
	// release gives back the API key's concurrency place (keys_http.go);
	// nil without one.
	release func()
}

type requestKey struct{}

// req returns the state serveHTTP stored for this request.
func (g *Gateway) req(ctx *fasthttp.RequestCtx) *request {
	if r, ok := ctx.UserValue(requestKey{}).(*request); ok {
		return r
	}
	// Unreachable: every route runs under serveHTTP.
	return &request{id: "-", log: g.log, fields: logrus.Fields{}}
}

// serveHTTP wraps the router: request id in and out, one access log line.
func (g *Gateway) serveHTTP(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	id := requestID(&ctx.Request.Header)
	ctx.Response.Header.Set(HeaderRequestID, id)
	log := g.log.WithField(cloudlog.FieldRequestID, id)
	if tr, ok := cloudlog.ParseTrace(string(ctx.Request.Header.Peek("traceparent")), string(ctx.Request.Header.Peek("X-Cloud-Trace-Context"))); ok {
		// Every line of the request carries its trace (Cloud Logging's
		// trace field when the project is known).
		log = log.WithFields(logrus.Fields{cloudlog.FieldTrace: tr.ID, cloudlog.FieldTraceSampled: tr.Sampled})
		if tr.SpanID != "" {
			log = log.WithField(cloudlog.FieldSpan, tr.SpanID)
		}
	}
	r := &request{id: id, log: log, fields: logrus.Fields{}}
	ctx.SetUserValue(requestKey{}, r)
	if g.draining.Load() {
		// The listener goes away soon: no keep-alive past this answer.
		ctx.SetConnectionClose()
	}

	g.metrics.inFlight.Inc()
	if g.authorize(ctx, r) {
		g.router.Handler(ctx)
		if r.release != nil {
			r.release()
		}
	}
	g.metrics.inFlight.Dec()
	g.metrics.observe(ctx, start)

	status := ctx.Response.StatusCode()
	r.fields["method"] = string(ctx.Method())
	r.fields["path"] = string(ctx.Path())
	r.fields["status"] = status
	r.fields["duration_ms"] = time.Since(start).Milliseconds()
	r.fields["remote_addr"] = ctx.RemoteAddr().String()
	r.fields[cloudlog.FieldHTTPRequest] = cloudlog.HTTPRequest{
		RequestMethod: string(ctx.Method()),
		RequestURL:    string(ctx.RequestURI()),
		Status:        status,
		Latency:       cloudlog.Latency(time.Since(start)),
		RemoteIP:      ctx.RemoteIP().String(),
		UserAgent:     string(ctx.UserAgent()),
		RequestSize:   strconv.Itoa(len(ctx.Request.Header.Header()) + len(ctx.Request.Body())),
		Protocol:      string(ctx.Request.Header.Protocol()),
	}
	entry := r.log.WithFields(r.fields)
	if status == fasthttp.StatusOK && string(ctx.Path()) == "/health" {
		entry.Debug("request")
	} else {
		entry.Info("request")
	}
}

// handleServerError answers requests fasthttp could not read.
func (g *Gateway) handleServerError(ctx *fasthttp.RequestCtx, err error) {
	id := requestID(&ctx.Request.Header)
	ctx.Response.Header.Set(HeaderRequestID, id)
	var e *apiError
	var small *fasthttp.ErrSmallBuffer
	var netErr net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		e = g.bodyTooLarge()
		lingerOnClose(ctx.Conn())
	case errors.As(err, &small):
		e = &apiError{Type: errHeadersTooLarge, Message: "request headers too large"}
	case errors.As(err, &netErr) && netErr.Timeout():
		e = &apiError{Type: errRequestTimeout, Message: "timed out reading the request"}
	default:
		e = invalidRequest("malformed HTTP request")
	}
	g.log.WithFields(logrus.Fields{
		"request_id":  id,
		"remote_addr": ctx.RemoteAddr().String(),
		"error_type":  string(e.Type),
		"status":      statusFor(e.Type),
	}).WithError(err).Info("request refused")
	writeError(ctx, e, nil, nil)
}

func (g *Gateway) bodyTooLarge() *apiError { return bodyTooLarge(g.cfg.MaxBodyBytes) }

// bodyTooLarge is the error of a body over max bytes (not counting the args
// and files fields, whose room is on top).
func bodyTooLarge(max int) *apiError {
	return &apiError{Type: errBodyTooLarge,
		Message: "request body exceeds " + strconv.Itoa(max) + " bytes"}
}

// handleExpect answers "Expect: 100-continue": a body announced over the
// limit is refused at once with the JSON 413, before the client sends it.
func (g *Gateway) handleExpect(ctx *fasthttp.RequestCtx) int {
	if n := ctx.Request.Header.ContentLength(); n > g.cfg.MaxBodyBytes+ioBodyRoom() {
		g.handleServerError(ctx, fasthttp.ErrBodyTooLarge)
		return fasthttp.StatusRequestEntityTooLarge
	}
	return fasthttp.StatusContinue
}

func (g *Gateway) handlePanic(ctx *fasthttp.RequestCtx, v any) {
	r := g.req(ctx)
	r.log.WithField("panic", fmt.Sprint(v)).WithField("stack", string(debug.Stack())).Error("handler panicked")
	ctx.Response.Reset()
	ctx.Response.Header.Set(HeaderRequestID, r.id)
	writeError(ctx, internalError(r.id), nil, nil)
}

func internalError(id string) *apiError {
	return &apiError{Type: wire.ErrInternal, Message: "internal error (request id " + id + ")"}
}

// fasthttpLogger sends fasthttp's own messages (connection-level errors) to
// the gateway log.
type fasthttpLogger struct{ log *logrus.Entry }

func (l fasthttpLogger) Printf(format string, args ...any) {
	l.log.WithField("component", "fasthttp").Warnf(format, args...)
}
