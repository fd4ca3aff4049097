package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/sirupsen/logrus"
)

// Run prepares the host, proves the jail works, and serves until ctx is done.
// On return the socket file is gone and every execution has ended.
func Run(ctx context.Context, cfg Config, log *logrus.Entry) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if os.Geteuid() != 0 {
		return errors.New("the supervisor must run as root (it creates namespaces and cgroups)")
	}
	host, err := PrepareHost(cfg, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := host.Close(); err != nil {
			log.WithError(err).Warn("clean up host")
		}
	}()
	r, err := newReaper()
	if err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	stopReaper := make(chan struct{})
	defer close(stopReaper)
	go r.run(stopReaper)
	engine := host.Engine(r)
	note, err := SelfTest(ctx, engine, host, cfg.Degraded, log)
	if err != nil {
		return fmt.Errorf("self-test: %w", err)
	}
	if note != "" {
		host.Isolation = "degraded: " + note
	}
	l, err := Listen(cfg)
	if err != nil {
		return err
	}
	defer os.Remove(cfg.SocketPath)
	srv := NewServer(cfg, engine, host.Isolation, host.CgroupMode(), log)
	log.WithFields(logrus.Fields{
		"socket": cfg.SocketPath, "engine": engine.Name(), "isolation": host.Isolation,
		"cgroups": host.CgroupMode(), "slots": cfg.Slots, "queue": cfg.QueueSize,
	}).Info("supervisor ready")
	return srv.Serve(ctx, l)
}
