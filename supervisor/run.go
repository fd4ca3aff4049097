package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"github.com/python-executor/python-executor/internal/engine/warm"
	"github.com/python-executor/python-executor/internal/jail"
	"github.com/python-executor/python-executor/internal/proc"
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
	// Before anything of the host is touched (lockInstance says why).
	lock, err := lockInstance(cfg)
	if err != nil {
		return err
	}
	defer lock.release()
	host, err := PrepareHost(cfg, log)
	if err != nil && cfg.Isolation == IsolationAuto {
		log.WithError(err).Warn("the full isolation tier is not available on this host: choosing the container tier")
		cfg.Isolation = IsolationContainer
		host, err = PrepareHost(cfg, log)
	}
	if err != nil {
		return err
	}
	defer func() {
		if err := host.Close(); err != nil {
			log.WithError(err).Warn("clean up host")
		}
	}()
	r, err := proc.NewReaper()
	if err != nil {
		return fmt.Errorf("become subreaper: %w", err)
	}
	stopReaper := make(chan struct{})
	defer close(stopReaper)
	go r.Run(stopReaper)
	engine, note, err := startEngine(ctx, cfg, host, r, log)
	if err != nil {
		return err
	}
	if c, ok := engine.(io.Closer); ok {
		defer c.Close()
	}
	if note != "" {
		host.Isolation = "degraded: " + note
	}
	l, err := Listen(cfg)
	if err != nil {
		return err
	}
	defer func() {
		os.Remove(cfg.SocketPath)
		// The directory too, when nothing else lives in it: a stopped
		// service leaves nothing of its own behind.
		os.Remove(filepath.Dir(cfg.SocketPath))
	}()
	srv := NewServer(cfg, engine, host.Isolation, host.CgroupMode(), log)
	if host.Cgroups != nil {
		// /health must say when executions cannot get their cgroups (the
		// parent removed, the hierarchy unmounted, out of cgroup ids).
		// The probe's cgroup is a default execution's, from its Spec,
		// always a new one: a cgroup kept for reuse would hide that no
		// more can be created.
		pol := host.Policy
		pol.Limits = cfg.Defaults.JailLimits()
		spec, err := jail.DescribeWithCgroup(pol)
		if err != nil {
			return fmt.Errorf("describe the execution jail: %w", err)
		}
		var n atomic.Uint64
		srv.cgroupProbe = func() error {
			cg, err := host.Cgroups.NewFreshExec(fmt.Sprintf("probe-%d", n.Add(1)), spec.Cgroup)
			if err != nil {
				return err
			}
			return cg.Remove()
		}
	}
	prot := protectionsOf(host, engine.Name())
	srv.SetProtections(prot)
	log.WithFields(logrus.Fields{
		"socket": cfg.SocketPath, "engine": engine.Name(), "isolation": host.Isolation,
		"cgroups": host.CgroupMode(), "slots": cfg.Slots, "queue": cfg.QueueSize,
		"tier": prot.Tier, "protections": strings.Join(prot.Active, ","), "missing": strings.Join(prot.Missing, ","),
	}).Info("supervisor ready")
	if cfg.ClientGroup != "" {
		clog := log.WithFields(logrus.Fields{"client_group": cfg.ClientGroup, "client_slots": cfg.ClientSlots, "client_queue": cfg.ClientQueue})
		if cfg.ClientSlots >= cfg.Slots || cfg.ClientQueue >= cfg.QueueSize {
			// Allowed (one slot has no half), but the operator should
			// know the gateway's share is not kept.
			clog.Warn("internal clients admitted; one of them may take every slot or queue place: lower -client-slots / -client-queue below -slots / -queue to keep the gateway a share")
		} else {
			clog.Info("internal clients admitted")
		}
	}
	return srv.Serve(ctx, l)
}

// startEngine starts the configured engine and proves it with the self-test.
// A warm engine that cannot start or fails its self-test (a host that
// refuses nested namespaces, say) is replaced by the cold engine, loudly.
func startEngine(ctx context.Context, cfg Config, host *Host, r *proc.Reaper, log *logrus.Entry) (engine Engine, note string, err error) {
	if cfg.Engine == EngineWarm && host.Tier == TierContainer {
		// A zygote's children are made in namespaces of their own.
		log.Warn("the warm engine needs namespaces, which the container isolation tier does not have: running the cold engine (one nsjail per execution, slower)")
	} else if cfg.Engine == EngineWarm {
		w, err := warm.New(host.Host, r, cfg.Zygotes, cfg.SlimZygotes, cfg.Preload, cfg.Defaults, cfg.Max, cfg.NotReadyAfter, log)
		if err == nil {
			note, err = SelfTest(ctx, w, host, cfg.Degraded, log)
			if p := w.OnPreloaded(); err == nil && p != nil {
				// The probes import nothing, so they ran on the slim
				// zygotes; once more on the preloaded ones.
				var n string
				if n, err = SelfTest(ctx, p, host, cfg.Degraded, log.WithField("zygote_kind", "preloaded")); n != "" {
					note = n
				}
			}
			if err != nil {
				w.Close()
			}
		}
		if err == nil {
			return w, note, nil
		}
		if ctx.Err() != nil {
			return nil, "", ctx.Err()
		}
		log.WithError(err).Error("WARM ENGINE UNAVAILABLE on this host: falling back to the cold engine (one nsjail per execution, much slower)")
	}
	cold := host.ColdEngine(r)
	if note, err = SelfTest(ctx, cold, host, cfg.Degraded, log); err != nil {
		return nil, "", fmt.Errorf("self-test: %w", err)
	}
	return cold, note, nil
}
