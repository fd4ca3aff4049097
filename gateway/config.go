package gateway

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/python-executor/python-executor/cloudlog"
	"github.com/python-executor/python-executor/config"
	"github.com/python-executor/python-executor/gateway/keyline"
	"github.com/python-executor/python-executor/limits"
)

// EnvPrefix prefixes every environment variable the gateway reads, except
// PORT (the Cloud Run convention).
const EnvPrefix = "PYEXEC_"

// Defaults.
const (
	DefaultPort            = "8080"
	DefaultSocketPath      = "/run/python-executor/supervisor.sock"
	DefaultMaxBodyBytes    = 2 << 20
	DefaultReadTimeout     = 10 * time.Second
	DefaultWriteTimeout    = 10 * time.Second
	DefaultIdleTimeout     = 15 * time.Second
	DefaultMaxConns        = 1024
	DefaultMaxConnsPerIP   = 128
	DefaultMaxQueueWait    = 5 * time.Second
	DefaultExecuteGrace    = 5 * time.Second
	DefaultHealthTimeout   = 2 * time.Second
	DefaultDialTimeout     = 2 * time.Second
	DefaultShutdownTimeout = 8 * time.Second
	DefaultLogLevel        = "info"
	DefaultLogFormat       = "json"
	// DefaultMetricsAddr is loopback only: a scraper on the same host (or
	// Cloud Run's Prometheus sidecar, which shares the instance's network)
	// reaches it, the public never does.
	DefaultMetricsAddr    = "127.0.0.1:9090"
	DefaultKeyRate        = "60/m"
	DefaultKeyConcurrency = 4
	DefaultKeysPoll       = 2 * time.Second
)

// DefaultMaxTimeout is the largest "timeout" a request may ask for unless
// -max-timeout says otherwise: the limit table's maximum wall time, the same
// as the supervisor's.
var DefaultMaxTimeout = time.Duration(limits.Table[limits.Lookup("Timeout")].Max)

// Config configures the gateway. Start from DefaultConfig; a zero Config is
// not valid.
type Config struct {
	// Addr is the TCP address to listen on, host:port. It is the gateway's
	// only TCP listener.
	Addr string
	// SocketPath is the supervisor's Unix socket. The gateway itself does not
	// dial it (the Executor does); it is here so one Config describes the
	// binary.
	SocketPath string
	// DialTimeout bounds connecting to the supervisor socket.
	DialTimeout time.Duration
	// MaxBodyBytes is the largest request body accepted; larger bodies are
	// refused with 413 before they are read.
	MaxBodyBytes int
	// ReadTimeout bounds reading one request, headers and body, from the
	// moment the connection opens (or its next request's first byte): a
	// client that trickles its headers is dropped when it runs out.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one response.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a keep-alive connection waits for its next
	// request.
	IdleTimeout time.Duration
	// MaxConns caps the connections served at once; past it a new
	// connection is answered 503 and closed.
	MaxConns int
	// MaxConnsPerIP caps the connections from one client address; past it
	// a new one is answered 429 and closed. 0 = no cap (behind a proxy
	// that funnels every client through a few addresses).
	MaxConnsPerIP int
	// MaxTimeout is the largest "timeout" a request may ask for. It should
	// equal the supervisor's maximum wall time; a request without a timeout
	// is assumed to run at most this long.
	MaxTimeout time.Duration
	// MaxQueueWait is the longest an execution may wait for a supervisor
	// slot; the supervisor answers busy past it. The gateway tells the
	// supervisor and counts it in its own deadline.
	MaxQueueWait time.Duration
	// ExecuteGrace is how long past an execution's queue wait and timeout
	// the gateway waits for the supervisor's answer before giving up with
	// an internal error. It covers the supervisor's own clean-up.
	ExecuteGrace time.Duration
	// HealthTimeout bounds the supervisor status call behind GET /health.
	HealthTimeout time.Duration
	// ShutdownTimeout is the drain limit: how long in-flight executions may
	// finish after Run's context is cancelled (meanwhile /health answers 503
	// and new executions get unavailable); executions still running then are
	// cancelled. The default leaves a stop within Cloud Run's 10 s.
	ShutdownTimeout time.Duration
	// LogLevel is a logrus level name: trace, debug, info, warn, error.
	LogLevel string
	// LogFormat is "json" (production; the fields Cloud Logging maps, see
	// package cloudlog) or "text".
	LogFormat string
	// Playground serves the playground page (package gateway/playground)
	// at GET /; off, / is 404 like any unknown path (API-only
	// deployments).
	Playground bool
	// GoogleCloudProject is the Google Cloud project (GOOGLE_CLOUD_PROJECT):
	// with it, JSON log lines carry a request's trace as Cloud Logging's
	// trace field, which groups them under their request.
	GoogleCloudProject string
	// MetricsAddr is the host:port of the metrics listener (GET /metrics,
	// the gateway's and the supervisor's metrics); "" or "off" = none.
	MetricsAddr string

	// API keys (keys.go), off unless KeysFile or Keys is set; then
	// /execute and /mcp need "Authorization: Bearer <key>".
	//
	// KeysFile holds one "name:sha256hex [rate=Q/W] [concurrency=N]" per
	// line; it is reread when it changes (checked every KeysPoll) and on
	// SIGHUP.
	KeysFile string
	// Keys holds more such entries, separated by commas or newlines; they
	// are fixed for the process's life.
	Keys string
	// KeyRate is the rate limit of a key whose line sets none: "Q/W"
	// (keyline.ParseRate), or "off".
	KeyRate string
	// KeyConcurrency caps the requests of a key in progress at once, for a
	// key whose line sets none; 0 = no cap.
	KeyConcurrency int
	// KeysPoll is how often the keys file is checked for changes; 0 = only
	// on SIGHUP.
	KeysPoll time.Duration
}

// DefaultConfig returns the defaults: port 8080, the standard socket path, a
// 2 MiB body limit and a 30 s maximum execution timeout.
func DefaultConfig() Config {
	return Config{
		Addr:            ":" + DefaultPort,
		SocketPath:      DefaultSocketPath,
		DialTimeout:     DefaultDialTimeout,
		MaxBodyBytes:    DefaultMaxBodyBytes,
		ReadTimeout:     DefaultReadTimeout,
		WriteTimeout:    DefaultWriteTimeout,
		IdleTimeout:     DefaultIdleTimeout,
		MaxConns:        DefaultMaxConns,
		MaxConnsPerIP:   DefaultMaxConnsPerIP,
		MaxTimeout:      DefaultMaxTimeout,
		MaxQueueWait:    DefaultMaxQueueWait,
		ExecuteGrace:    DefaultExecuteGrace,
		HealthTimeout:   DefaultHealthTimeout,
		ShutdownTimeout: DefaultShutdownTimeout,
		LogLevel:        DefaultLogLevel,
		LogFormat:       DefaultLogFormat,
		Playground:      true,
		MetricsAddr:     DefaultMetricsAddr,
		KeyRate:         DefaultKeyRate,
		KeyConcurrency:  DefaultKeyConcurrency,
		KeysPoll:        DefaultKeysPoll,
	}
}

// Validate reports the first invalid field, naming it.
func (c Config) Validate() error {
	if _, port, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("listen address %q: %w", c.Addr, err)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("listen address %q: bad port", c.Addr)
	}
	if c.SocketPath == "" {
		return errors.New("supervisor socket path is empty")
	}
	if c.MaxBodyBytes <= 0 {
		return fmt.Errorf("max body bytes %d: must be positive", c.MaxBodyBytes)
	}
	if c.MaxConns <= 0 {
		return fmt.Errorf("max conns %d: must be positive", c.MaxConns)
	}
	if c.MaxConnsPerIP < 0 {
		return fmt.Errorf("max conns per ip %d: must not be negative", c.MaxConnsPerIP)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"dial timeout", c.DialTimeout},
		{"read timeout", c.ReadTimeout},
		{"write timeout", c.WriteTimeout},
		{"idle timeout", c.IdleTimeout},
		{"max timeout", c.MaxTimeout},
		{"max queue wait", c.MaxQueueWait},
		{"execute grace", c.ExecuteGrace},
		{"health timeout", c.HealthTimeout},
		{"shutdown timeout", c.ShutdownTimeout},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s %v: must be positive", d.name, d.v)
		}
	}
	if c.MaxTimeout < time.Millisecond {
		return fmt.Errorf("max timeout %v: must be at least 1ms", c.MaxTimeout)
	}
	if _, err := logrus.ParseLevel(c.LogLevel); err != nil {
		return fmt.Errorf("log level: %w", err)
	}
	if c.MetricsEnabled() {
		if _, port, err := net.SplitHostPort(c.MetricsAddr); err != nil {
			return fmt.Errorf("metrics listen address %q: %w", c.MetricsAddr, err)
		} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
			return fmt.Errorf("metrics listen address %q: bad port", c.MetricsAddr)
		}
	}
	if c.LogFormat != "json" && c.LogFormat != "text" {
		return fmt.Errorf("log format %q: want json or text", c.LogFormat)
	}
	if _, _, err := keyline.ParseRate(c.KeyRate); err != nil {
		return fmt.Errorf("key rate: %w", err)
	}
	if c.KeyConcurrency < 0 {
		return fmt.Errorf("key concurrency %d: must not be negative", c.KeyConcurrency)
	}
	if c.KeysPoll < 0 {
		return fmt.Errorf("keys poll %v: must not be negative", c.KeysPoll)
	}
	if c.Keys != "" {
		// The environment's list is fixed: check it now rather than at
		// the first Serve.
		if err := parseKeys(&keySet{policies: map[string]KeyPolicy{}}, c.Keys, "PYEXEC_KEYS", true, KeyPolicy{}); err != nil {
			return err
		}
	}
	return nil
}

// NewLogger builds the logger Config asks for, writing to w. Call it after
// Validate; an unknown level falls back to info.
func (c Config) NewLogger(w io.Writer) *logrus.Logger {
	l := logrus.New()
	l.SetOutput(w)
	level, err := logrus.ParseLevel(c.LogLevel)
	if err != nil {
		level = logrus.InfoLevel
	}
	l.SetLevel(level)
	if c.LogFormat == "text" {
		l.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	} else {
		l.SetFormatter(&cloudlog.Formatter{ProjectID: c.GoogleCloudProject})
	}
	return l
}

// BindFlags registers one flag per Config field on fs. Each flag's default is
// taken from its environment variable (read through getenv) when set, else
// from c, so the precedence is flag, then environment, then default (the
// binder of package config, shared with the supervisor). The listen address
// also falls back to ":$PORT". It fails on an environment value that does
// not parse, naming the variable and the value.
//
// Flags and variables: -listen PYEXEC_LISTEN (else PORT), -socket
// PYEXEC_SUPERVISOR_SOCKET, -dial-timeout PYEXEC_DIAL_TIMEOUT,
// -max-body-bytes PYEXEC_MAX_BODY_BYTES, -read-timeout PYEXEC_READ_TIMEOUT,
// -write-timeout PYEXEC_WRITE_TIMEOUT, -idle-timeout PYEXEC_IDLE_TIMEOUT,
// -max-conns PYEXEC_MAX_CONNS, -max-conns-per-ip PYEXEC_MAX_CONNS_PER_IP,
// -max-timeout PYEXEC_MAX_TIMEOUT, -max-queue-wait PYEXEC_MAX_QUEUE_WAIT,
// -execute-grace PYEXEC_EXECUTE_GRACE, -health-timeout
// PYEXEC_HEALTH_TIMEOUT, -drain-timeout PYEXEC_DRAIN_TIMEOUT (alias
// -shutdown-timeout PYEXEC_SHUTDOWN_TIMEOUT), -log-level PYEXEC_LOG_LEVEL, -log-format
// PYEXEC_LOG_FORMAT (else "text" when PYEXEC_LOG_TEXT=1, as for the
// supervisor), -playground PYEXEC_PLAYGROUND, -metrics-listen
// PYEXEC_METRICS_LISTEN, -keys-file PYEXEC_KEYS_FILE, -keys PYEXEC_KEYS, -key-rate
// PYEXEC_KEY_RATE, -key-concurrency PYEXEC_KEY_CONCURRENCY, -keys-poll
// PYEXEC_KEYS_POLL. Durations use Go syntax ("30s", "500ms"). PYEXEC_MAX_TIMEOUT,
// PYEXEC_MAX_QUEUE_WAIT, PYEXEC_DRAIN_TIMEOUT, PYEXEC_LOG_LEVEL and
// PYEXEC_SUPERVISOR_SOCKET mean the same to the supervisor, so one
// environment configures both.
func (c *Config) BindFlags(fs *flag.FlagSet, getenv func(string) string) error {
	b := config.New(fs, config.Getenv(getenv))
	if port, ok := b.Env("PORT"); ok {
		c.Addr = ":" + port
	}
	// The platform's name for it, as PORT.
	if project, ok := b.Env("GOOGLE_CLOUD_PROJECT"); ok {
		c.GoogleCloudProject = project
	}
	const p = EnvPrefix
	b.String(&c.Addr, "listen", p+"LISTEN", "TCP listen address host:port (else :$PORT)")
	b.String(&c.SocketPath, "socket", p+"SUPERVISOR_SOCKET", "supervisor Unix socket path")
	b.Duration(&c.DialTimeout, "dial-timeout", p+"DIAL_TIMEOUT", "timeout for connecting to the supervisor")
	b.Int(&c.MaxBodyBytes, "max-body-bytes", p+"MAX_BODY_BYTES", "largest request body in bytes")
	b.Duration(&c.ReadTimeout, "read-timeout", p+"READ_TIMEOUT", "timeout for reading a request")
	b.Duration(&c.WriteTimeout, "write-timeout", p+"WRITE_TIMEOUT", "timeout for writing a response")
	b.Duration(&c.IdleTimeout, "idle-timeout", p+"IDLE_TIMEOUT", "keep-alive idle timeout")
	b.Int(&c.MaxConns, "max-conns", p+"MAX_CONNS", "connections served at once; past it new ones get 503")
	b.Int(&c.MaxConnsPerIP, "max-conns-per-ip", p+"MAX_CONNS_PER_IP", "connections from one client address; past it new ones get 429 (0 = no cap)")
	// The supervisor's -max-timeout (the limit table's flag), shared.
	b.Duration(&c.MaxTimeout, "max-timeout", p+"MAX_TIMEOUT", "largest execution timeout a request may ask for")
	b.Duration(&c.MaxQueueWait, "max-queue-wait", p+"MAX_QUEUE_WAIT", "longest wait for an execution slot before busy")
	b.Duration(&c.ExecuteGrace, "execute-grace", p+"EXECUTE_GRACE", "how long past the queue wait and execution timeout to wait for the supervisor")
	b.Duration(&c.HealthTimeout, "health-timeout", p+"HEALTH_TIMEOUT", "timeout for the supervisor status call of /health")
	// The old name first, so the shared PYEXEC_DRAIN_TIMEOUT wins over it.
	b.Duration(&c.ShutdownTimeout, "shutdown-timeout", p+"SHUTDOWN_TIMEOUT", "alias of -drain-timeout")
	b.Duration(&c.ShutdownTimeout, "drain-timeout", p+"DRAIN_TIMEOUT", "at shutdown, how long executions in flight may finish before they are cancelled")
	b.String(&c.LogLevel, "log-level", p+"LOG_LEVEL", "log level: trace, debug, info, warn, error")
	// The supervisor's switch, so one setting serves both; a value that is
	// not a boolean fails here as it does there.
	logText := false
	if v, ok := b.Env(p + "LOG_TEXT"); ok {
		if t, err := strconv.ParseBool(v); err != nil {
			b.Fail(p+"LOG_TEXT", v, "not a boolean (want 1 or 0, true or false)")
		} else {
			logText = t
		}
	}
	if logText {
		c.LogFormat = "text"
	}
	b.String(&c.LogFormat, "log-format", p+"LOG_FORMAT", "log format: json or text")
	b.Bool(&c.Playground, "playground", p+"PLAYGROUND", "serve the playground page at GET / (false: / is 404, for API-only deployments)")
	b.StringAllowEmpty(&c.MetricsAddr, "metrics-listen", p+"METRICS_LISTEN", "host:port of the metrics listener (GET /metrics); \"\" or off = none")
	b.String(&c.KeysFile, "keys-file", p+"KEYS_FILE", "API keys file, one name:sha256hex [rate=Q/W] [concurrency=N] per line; keys on when set (reread on change and SIGHUP)")
	b.String(&c.Keys, "keys", p+"KEYS", "more API key entries, comma-separated (as the keys file's lines); keys on when set")
	b.String(&c.KeyRate, "key-rate", p+"KEY_RATE", "rate limit of a key whose line sets none: QUOTA/WINDOW (60/m, 100/10s) or off")
	b.Int(&c.KeyConcurrency, "key-concurrency", p+"KEY_CONCURRENCY", "requests of one key in progress at once, for a key whose line sets none (0 = no cap)")
	b.Duration(&c.KeysPoll, "keys-poll", p+"KEYS_POLL", "how often the keys file is checked for changes (0 = only on SIGHUP)")
	return b.Err()
}
