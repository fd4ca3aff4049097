package gateway

import (
	"context"

	"github.com/valyala/fasthttp"
)

// handleHealth serves GET /health: 200 with the supervisor's engine,
// isolation level and cgroup mode when it answers its status request within
// Config.HealthTimeout and can run executions; else 503 with the reason.
// While the gateway drains it answers 503 at once.
func (g *Gateway) handleHealth(ctx *fasthttp.RequestCtx) {
	r := g.req(ctx)
	if g.draining.Load() {
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, []byte(`{"status":"unhealthy","reason":"shutting down"}`))
		return
	}
	sctx, cancel := context.WithTimeout(g.base, g.cfg.HealthTimeout)
	defer cancel()
	st, err := g.exec.Status(sctx)
	if err != nil {
		r.log.WithError(err).Warn("health: supervisor status failed")
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, []byte(`{"status":"unhealthy","supervisor":"unreachable"}`))
		return
	}
	status, code := "healthy", fasthttp.StatusOK
	if st.NotReady != "" {
		status, code = "unhealthy", fasthttp.StatusServiceUnavailable
		r.log.WithField("reason", st.NotReady).Warn("health: the supervisor cannot run executions")
	}
	b := make([]byte, 0, 160)
	b = append(b, `{"status":"`...)
	b = append(b, status...)
	b = append(b, `","supervisor":"reachable","engine":`...)
	b = appendString(b, []byte(st.Engine))
	b = append(b, `,"isolation":`...)
	b = appendString(b, []byte(st.Isolation))
	b = append(b, `,"cgroups":`...)
	b = appendString(b, []byte(st.Cgroups))
	if st.NotReady != "" {
		b = append(b, `,"reason":`...)
		b = appendString(b, []byte(st.NotReady))
	}
	// Optional keys, present when the supervisor reports them.
	if st.Tier != "" {
		b = append(b, `,"tier":`...)
		b = appendString(b, []byte(st.Tier))
		b = appendStringList(b, "protections", st.Protections)
		b = appendStringList(b, "missing", st.Missing)
	}
	b = append(b, '}')
	writeJSON(ctx, code, b)
}

// appendStringList appends ,"key":[...] (an empty array for none).
func appendStringList(b []byte, key string, list []string) []byte {
	b = append(b, `,"`...)
	b = append(b, key...)
	b = append(b, `":[`...)
	for i, v := range list {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, []byte(v))
	}
	return append(b, ']')
}
