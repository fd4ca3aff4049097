package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		errSub string // "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"port 0", func(c *Config) { c.Addr = "127.0.0.1:0" }, ""},
		{"no port", func(c *Config) { c.Addr = "localhost" }, "listen address"},
		{"bad port", func(c *Config) { c.Addr = ":http-alt" }, "bad port"},
		{"port too big", func(c *Config) { c.Addr = ":70000" }, "bad port"},
		{"no socket", func(c *Config) { c.SocketPath = "" }, "socket"},
		{"body limit 0", func(c *Config) { c.MaxBodyBytes = 0 }, "max body bytes"},
		{"read timeout 0", func(c *Config) { c.ReadTimeout = 0 }, "read timeout"},
		{"max timeout negative", func(c *Config) { c.MaxTimeout = -time.Second }, "max timeout"},
		{"max timeout under 1ms", func(c *Config) { c.MaxTimeout = time.Microsecond }, "at least 1ms"},
		{"grace 0", func(c *Config) { c.ExecuteGrace = 0 }, "execute grace"},
		{"bad level", func(c *Config) { c.LogLevel = "loud" }, "log level"},
		{"bad format", func(c *Config) { c.LogFormat = "xml" }, "log format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			tt.change(&c)
			err := c.Validate()
			switch {
			case tt.errSub == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.errSub != "" && (err == nil || !strings.Contains(err.Error(), tt.errSub)):
				t.Errorf("Validate() = %v, want an error about %q", err, tt.errSub)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := DefaultConfig()
	if c.Addr != ":8080" || c.SocketPath != "/run/python-executor/supervisor.sock" ||
		c.MaxBodyBytes != 2<<20 || c.MaxTimeout != 30*time.Second || c.LogFormat != "json" {
		t.Errorf("DefaultConfig() = %+v", c)
	}
}

func TestBindFlags(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		check func(t *testing.T, c Config)
		err   string
	}{
		{"defaults", nil, nil, func(t *testing.T, c Config) {
			if c != DefaultConfig() {
				t.Errorf("got %+v, want the defaults", c)
			}
		}, ""},
		{"PORT", map[string]string{"PORT": "9000"}, nil, func(t *testing.T, c Config) {
			if c.Addr != ":9000" {
				t.Errorf("Addr = %q, want :9000", c.Addr)
			}
		}, ""},
		{"PYEXEC_LISTEN beats PORT", map[string]string{"PORT": "9000", "PYEXEC_LISTEN": "127.0.0.1:9100"}, nil, func(t *testing.T, c Config) {
			if c.Addr != "127.0.0.1:9100" {
				t.Errorf("Addr = %q", c.Addr)
			}
		}, ""},
		{"flag beats env", map[string]string{"PORT": "9000", "PYEXEC_MAX_TIMEOUT": "10s"},
			[]string{"-listen", ":7000", "-max-timeout", "5s"}, func(t *testing.T, c Config) {
				if c.Addr != ":7000" || c.MaxTimeout != 5*time.Second {
					t.Errorf("Addr %q MaxTimeout %v", c.Addr, c.MaxTimeout)
				}
			}, ""},
		{"env values", map[string]string{
			"PYEXEC_SUPERVISOR_SOCKET": "/tmp/s.sock", "PYEXEC_MAX_BODY_BYTES": "1024",
			"PYEXEC_READ_TIMEOUT": "3s", "PYEXEC_LOG_LEVEL": "debug", "PYEXEC_LOG_FORMAT": "text",
			"PYEXEC_SHUTDOWN_TIMEOUT": "1m",
		}, nil, func(t *testing.T, c Config) {
			if c.SocketPath != "/tmp/s.sock" || c.MaxBodyBytes != 1024 || c.ReadTimeout != 3*time.Second ||
				c.LogLevel != "debug" || c.LogFormat != "text" || c.ShutdownTimeout != time.Minute {
				t.Errorf("got %+v", c)
			}
		}, ""},
		{"service env values", map[string]string{
			"PYEXEC_MAX_CONNS": "50", "PYEXEC_MAX_CONNS_PER_IP": "0", "PYEXEC_MAX_QUEUE_WAIT": "2s",
			"PYEXEC_SHUTDOWN_TIMEOUT": "1m", "PYEXEC_DRAIN_TIMEOUT": "3s",
		}, nil, func(t *testing.T, c Config) {
			if c.MaxConns != 50 || c.MaxConnsPerIP != 0 || c.MaxQueueWait != 2*time.Second || c.ShutdownTimeout != 3*time.Second {
				t.Errorf("got %+v (PYEXEC_DRAIN_TIMEOUT must win over its old name)", c)
			}
		}, ""},
		{"bad env conns", map[string]string{"PYEXEC_MAX_CONNS_PER_IP": "many"}, nil, nil, "PYEXEC_MAX_CONNS_PER_IP"},
		{"PYEXEC_LOG_TEXT", map[string]string{"PYEXEC_LOG_TEXT": "1"}, nil, func(t *testing.T, c Config) {
			if c.LogFormat != "text" {
				t.Errorf("LogFormat = %q, want text", c.LogFormat)
			}
		}, ""},
		{"PYEXEC_LOG_FORMAT beats PYEXEC_LOG_TEXT", map[string]string{"PYEXEC_LOG_TEXT": "1", "PYEXEC_LOG_FORMAT": "json"}, nil, func(t *testing.T, c Config) {
			if c.LogFormat != "json" {
				t.Errorf("LogFormat = %q, want json", c.LogFormat)
			}
		}, ""},
		{"playground on by default, off by env", map[string]string{"PYEXEC_PLAYGROUND": "false"}, nil, func(t *testing.T, c Config) {
			if c.Playground || !DefaultConfig().Playground {
				t.Errorf("Playground = %v (default %v), want false from PYEXEC_PLAYGROUND=false and true by default", c.Playground, DefaultConfig().Playground)
			}
		}, ""},
		{"playground flag", nil, []string{"-playground=false"}, func(t *testing.T, c Config) {
			if c.Playground {
				t.Error("Playground = true after -playground=false")
			}
		}, ""},
		{"bad env playground", map[string]string{"PYEXEC_PLAYGROUND": "nope"}, nil, nil, "PYEXEC_PLAYGROUND"},
		{"bad env duration", map[string]string{"PYEXEC_IDLE_TIMEOUT": "soon"}, nil, nil, "PYEXEC_IDLE_TIMEOUT"},
		{"bad env int", map[string]string{"PYEXEC_MAX_BODY_BYTES": "2MiB"}, nil, nil, "PYEXEC_MAX_BODY_BYTES"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := DefaultConfig()
			fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			err := c.BindFlags(fs, func(k string) string { return tt.env[k] })
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Errorf("BindFlags() = %v, want an error naming %s", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("BindFlags() = %v", err)
			}
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse(%q) = %v", tt.args, err)
			}
			tt.check(t, c)
		})
	}
}

func TestNewLoggerJSON(t *testing.T) {
	var buf bytes.Buffer
	c := DefaultConfig()
	c.NewLogger(&buf).WithField("request_id", "r1").Info("hello")
	var line map[string]any
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil {
		t.Fatalf("log line %q is not JSON: %v", buf.String(), err)
	}
	if line["request_id"] != "r1" || line["message"] != "hello" || line["severity"] != "INFO" {
		t.Errorf("log line = %v", line)
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := testConfig()
	cfg.Addr = ln.Addr().String() // taken
	err = New(cfg, &fakeExec{}, cfg.NewLogger(io.Discard).WithField("test", t.Name())).Run(context.Background())
	if err == nil || !strings.HasPrefix(err.Error(), "listen: ") {
		t.Errorf("Run() = %v, want a listen error", err)
	}
}
