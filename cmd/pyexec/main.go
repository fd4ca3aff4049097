// Package main is the pyexec command: it runs a Python script on
// python-executor from the shell:
//
//	pyexec run script.py [--arg k=v]... [--file path]... [--timeout s] [--url URL | --socket PATH]
//	pyexec health [--url URL | --socket PATH]
//
// It talks to the gateway's HTTP API (--url, default $PYEXEC_URL or
// http://127.0.0.1:8080) with the NDJSON stream, or straight to the
// supervisor's Unix socket (--socket, or $PYEXEC_SOCKET) with the client
// package, for a caller allowed on it. Either way the script's stdout and
// stderr are written as they come, then main()'s result as JSON; output
// files and figures are saved under --out; the exit status says how the
// execution ended, one per error type (see `pyexec help` and the README).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/python-executor/python-executor/config"
)

const defaultURL = "http://127.0.0.1:8080"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr, os.LookupEnv)
	stop()
	os.Exit(code)
}

const usageText = `usage:
  pyexec run SCRIPT.py [flags]   run SCRIPT.py's main() ("-" reads the script from stdin)
  pyexec health [flags]          is the service up and able to run scripts?
  pyexec help                    this text and the exit statuses

Run "pyexec run -h" or "pyexec health -h" for the flags.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usageText)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stdout, stderr, env)
	case "health":
		return cmdHealth(ctx, args[1:], stdout, stderr, env)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usageText)
		fmt.Fprintln(stdout, "\nexit statuses of pyexec run:")
		for _, e := range exitTable() {
			fmt.Fprintf(stdout, "  %3d  %-20s %s\n", e.Code, e.Type, e.Doc)
		}
		fmt.Fprintln(stdout, "\npyexec health: 0 healthy, 1 unhealthy, 24 unreachable, 2 usage.")
		return exitOK
	default:
		fmt.Fprintf(stderr, "pyexec: unknown command %q\n%s", args[0], usageText)
		return exitUsage
	}
}

// target is where the command goes: a gateway URL or a supervisor socket.
type target struct {
	url, socket, key string
}

// bindTarget registers --url, --socket and --key.
func bindTarget(b *config.Binder, t *target) {
	t.url = defaultURL
	b.String(&t.url, "url", "PYEXEC_URL", "the service's base URL")
	b.String(&t.socket, "socket", "PYEXEC_SOCKET", "talk to the supervisor's Unix socket instead of a URL (it is "+defaultSocket+" under make run; needs root or the gateway's user)")
	b.String(&t.key, "key", "PYEXEC_API_KEY", "API key, sent as Authorization: Bearer (URL mode; prefer the variable: a flag shows in ps)")
}

// resolve picks the mode: a flag on the command line wins over a variable;
// --url and --socket both on the command line is a usage error.
func (t *target) resolve(fs *flag.FlagSet) error {
	onLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onLine[f.Name] = true })
	switch {
	case onLine["url"] && onLine["socket"]:
		return usagef("give --url or --socket, not both")
	case onLine["url"]:
		t.socket = ""
	}
	if t.socket != "" {
		t.url = ""
	}
	return nil
}

// parseInterleaved parses fs over args allowing positional arguments
// between the flags (`pyexec run x.py --arg a=1`), which the flag package
// alone stops at; everything after "--" is positional.
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		dashdash := -1
		for i, a := range args {
			if a == "--" {
				dashdash = i
				break
			}
		}
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		// The flag package consumed a "--" exactly when what is left is
		// what followed it.
		if dashdash >= 0 && len(rest) == len(args)-dashdash-1 {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func newFlagSet(name string, stderr io.Writer, env config.Lookup) (*flag.FlagSet, *config.Binder) {
	fs := flag.NewFlagSet("pyexec "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs, config.New(fs, env)
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) int {
	fs, b := newFlagSet("run", stderr, env)
	var (
		t                        target
		argPairs, files, limitKV multiFlag
		timeout, outDir          string
		asJSON, verbose          bool
	)
	bindTarget(b, &t)
	fs.Var(&argPairs, "arg", "k=v: call main(k=v); v is JSON when it parses as JSON, else a string (repeatable)")
	fs.Var(&files, "file", "a file to put in the script's working directory under its base name (repeatable)")
	fs.StringVar(&timeout, "timeout", "", "wall-clock limit: seconds (2.5) or a duration (1m); default the service's")
	fs.Var(&limitKV, "limit", "name=value: another limit field of the API (memory_mb=256, cpu_seconds=1, ...) (repeatable)")
	outDir = "pyexec-out"
	b.String(&outDir, "out", "PYEXEC_OUT", "directory for output files (files/) and figures (images/)")
	fs.BoolVar(&asJSON, "json", false, "print the whole answer as JSON (the API's shape) instead of the result")
	fs.BoolVar(&verbose, "stats", false, "print the execution's statistics on stderr")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: pyexec run SCRIPT.py [flags]")
		fs.PrintDefaults()
	}
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := b.Err(); err != nil {
		return usage(stderr, err)
	}
	if len(pos) != 1 {
		return usage(stderr, usagef("want exactly one script, got %d arguments", len(pos)))
	}
	if err := t.resolve(fs); err != nil {
		return usage(stderr, err)
	}
	req, err := buildRequest(pos[0], argPairs, files, limitKV, timeout)
	if err != nil {
		return usage(stderr, err)
	}
	p := &printer{stdout: stdout, stderr: stderr, json: asJSON, verbose: verbose, outDir: outDir}
	var r *response
	if t.socket != "" {
		r, err = runSocket(ctx, t.socket, req, p)
	} else {
		r, err = runHTTP(ctx, t.url, t.key, req, p)
	}
	if err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(stderr, "pyexec: interrupted; the execution was cancelled")
			return exitInterrupted
		}
		return usage(stderr, err)
	}
	return p.finish(r)
}

func buildRequest(script string, argPairs, files, limitKV []string, timeout string) (*request, error) {
	var src []byte
	var err error
	if script == "-" {
		src, err = io.ReadAll(os.Stdin)
	} else {
		src, err = os.ReadFile(script)
	}
	if err != nil {
		return nil, usagef("script: %v", err)
	}
	if strings.TrimSpace(string(src)) == "" {
		return nil, usagef("script %s is empty", script)
	}
	r := &request{Script: string(src)}
	if r.Args, err = parseArgs(argPairs); err != nil {
		return nil, err
	}
	if r.Files, err = readFiles(files); err != nil {
		return nil, err
	}
	if r.Limits, err = parseLimits(limitKV, timeout); err != nil {
		return nil, err
	}
	return r, nil
}

func usage(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "pyexec:", err)
	return exitUsage
}

func cmdHealth(ctx context.Context, args []string, stdout, stderr io.Writer, env config.Lookup) int {
	fs, b := newFlagSet("health", stderr, env)
	var t target
	bindTarget(b, &t)
	pos, err := parseInterleaved(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if err := b.Err(); err != nil {
		return usage(stderr, err)
	}
	if len(pos) != 0 {
		return usage(stderr, usagef("health takes no arguments"))
	}
	if err := t.resolve(fs); err != nil {
		return usage(stderr, err)
	}
	var body []byte
	healthy := false
	if t.socket != "" {
		h, err := healthSocket(ctx, t.socket)
		if err != nil {
			fmt.Fprintf(stderr, "pyexec: cannot reach the supervisor: %v\n", err)
			return exitCode("unavailable")
		}
		body, _ = json.Marshal(h)
		healthy = h.Status == "healthy"
	} else {
		var status int
		body, status, err = healthHTTP(ctx, t.url)
		if err != nil {
			var ue *usageError
			if errors.As(err, &ue) {
				return usage(stderr, err)
			}
			fmt.Fprintf(stderr, "pyexec: cannot reach the service: %v\n", err)
			return exitCode("unavailable")
		}
		healthy = status == 200
	}
	var pretty strings.Builder
	enc := json.NewEncoder(&pretty)
	enc.SetIndent("", "  ")
	enc.Encode(json.RawMessage(body))
	io.WriteString(stdout, pretty.String())
	if !healthy {
		return exitUnhealthy
	}
	return exitOK
}
