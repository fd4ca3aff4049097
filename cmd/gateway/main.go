// Package main is the gateway command, python-executor's public HTTP server
// (package gateway).
// It is the service's only TCP listener and talks to the supervisor over its
// Unix socket. The launcher starts it as the unprivileged user pyexec-gw; it
// refuses to run as root unless -allow-root is given (for development only).
//
// Flags and their PYEXEC_* environment fallbacks are listed by -help and in
// gateway.Config.BindFlags.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/gateway"
	"github.com/python-executor/python-executor/wire"
)

const software = "python-executor-gateway/0.1"

func main() {
	os.Exit(run())
}

func run() int {
	closeExeFD()
	cfg := gateway.DefaultConfig()
	if err := cfg.BindFlags(flag.CommandLine, os.Getenv); err != nil {
		fmt.Fprintln(os.Stderr, "gateway:", err)
		return 2
	}
	allowRoot := flag.Bool("allow-root", false, "run even as root (development only)")
	flag.Parse()
	if err := cfg.Validate(); err != nil {
		fmt.Fprintln(os.Stderr, "gateway: config:", err)
		return 2
	}
	if os.Geteuid() == 0 && !*allowRoot {
		fmt.Fprintln(os.Stderr, "gateway: refusing to run as root; run as pyexec-gw, or pass -allow-root")
		return 2
	}
	log := cfg.NewLogger(os.Stderr).WithField("component", "gateway")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	c := client.New(client.Config{
		SocketPath:  cfg.SocketPath,
		DialTimeout: cfg.DialTimeout,
		MaxFrame:    wire.DefaultMaxFrame,
		Software:    software,
		Logger:      log.WithField("component", "client"),
		// args and files (request) and output files (response); figures
		// left open by main() come back as "images".
		// The supervisor's metrics, served on the metrics listener.
		Features: []string{wire.FeatureIO, wire.FeatureImages, wire.FeatureMetrics},
	})
	defer c.Close()

	g := gateway.New(cfg, c, log)
	// SIGHUP rereads the API keys file (a failed reread keeps the keys in
	// force and is logged); without keys it is logged and ignored, never
	// the default of ending the process.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for range hup {
			_ = g.ReloadKeys()
		}
	}()

	if err := g.Run(ctx); err != nil {
		log.WithError(err).Error("gateway stopped")
		return 1
	}
	return 0
}

// exeFDEnv names the descriptor of the gateway's own executable that
// scripts/run.sh opened as root and exec'd through /proc/self/fd (so that a
// checkout only root can traverse still works). The descriptor has done its
// job once the program runs; it is closed so the process holds nothing it
// does not use.
const exeFDEnv = "PYEXEC_GATEWAY_EXE_FD"

func closeExeFD() {
	v, ok := os.LookupEnv(exeFDEnv)
	if !ok {
		return
	}
	os.Unsetenv(exeFDEnv)
	if fd, err := strconv.Atoi(v); err == nil && fd > 2 {
		syscall.Close(fd)
	}
}
