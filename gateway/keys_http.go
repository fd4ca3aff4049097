package gateway

import (
	"bytes"
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

// The HTTP side of API keys (keys.go): which paths need a key, the 401 and
// 429 answers, and the RateLimit headers of draft-ietf-httpapi-ratelimit-
// headers (RateLimit-Policy and RateLimit, as structured-field lists).

// keyedPath reports whether a request to path needs a key when keys are on:
// what runs code. /health (load balancers and probes), / (the playground,
// which sends the key its user typed) and /openapi.json stay open.
func keyedPath(path []byte) bool {
	return string(path) == "/execute" || string(path) == "/mcp" || bytes.HasPrefix(path, []byte("/mcp/"))
}

// Names of the two quota policies in the RateLimit headers.
const (
	policyRate        = "rate"
	policyConcurrency = "concurrency"
)

// authorize checks the key of a request to a keyed path and takes its
// quotas. It reports whether the request may go on; when it may not, the
// answer is written. On success r.release gives the concurrency place back
// (serveHTTP calls it when the handler returns, unless a stream took it).
func (g *Gateway) authorize(ctx *fasthttp.RequestCtx, r *request) bool {
	if g.keys == nil || ctx.IsOptions() || !keyedPath(ctx.Path()) {
		return true
	}
	key, ok := bearerToken(ctx.Request.Header.Peek("Authorization"))
	if !ok {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="python-executor"`)
		g.refuse(ctx, r, &apiError{Type: errUnauthorized,
			Message: "this server needs an API key: send it as Authorization: Bearer <key>"})
		return false
	}
	name := g.keys.lookup(key)
	if name == "" {
		ctx.Response.Header.Set("WWW-Authenticate", `Bearer realm="python-executor", error="invalid_token"`)
		g.refuse(ctx, r, &apiError{Type: errUnauthorized, Message: "the API key is not valid"})
		return false
	}
	r.fields["key"] = name
	a, release, err := g.keys.admit(name, time.Now())
	setRateLimitHeaders(&ctx.Response.Header, a)
	if err != nil {
		ctx.Response.Header.Set("Retry-After", strconv.Itoa(a.retryAfter))
		msg := "key " + name + " has used its rate limit (" + strconv.Itoa(a.policy.Quota) +
			" requests per " + a.policy.Window.String() + "); retry in " + strconv.Itoa(a.retryAfter) + "s"
		if errors.Is(err, errConcurrencyExceeded) {
			msg = "key " + name + " already has " + strconv.Itoa(a.policy.Concurrency) +
				" requests in progress, its concurrency limit; retry when one ends"
		}
		g.refuse(ctx, r, &apiError{Type: errRateLimited, Message: msg})
		return false
	}
	r.release = release
	return true
}

// bearerToken returns the credentials of an "Authorization: Bearer <token>"
// header (the scheme is case-insensitive, RFC 9110 section 11.1).
func bearerToken(h []byte) ([]byte, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) || !bytes.EqualFold(h[:len(scheme)], []byte(scheme)) {
		return nil, false
	}
	tok := bytes.TrimSpace(h[len(scheme):])
	return tok, len(tok) > 0
}

// setRateLimitHeaders writes the policies of a's name and where it stands.
// A policy that is off is left out; with none, no header.
func setRateLimitHeaders(h *fasthttp.ResponseHeader, a admission) {
	var policy, state []byte
	item := func(b []byte, name string) []byte {
		if len(b) > 0 {
			b = append(b, ", "...)
		}
		return append(append(append(b, '"'), name...), '"')
	}
	if p := a.policy; p.Quota > 0 {
		policy = item(policy, policyRate)
		policy = append(policy, ";q="...)
		policy = strconv.AppendInt(policy, int64(p.Quota), 10)
		policy = append(policy, ";w="...)
		policy = strconv.AppendInt(policy, int64(p.Window/time.Second), 10)
		state = item(state, policyRate)
		state = append(state, ";r="...)
		state = strconv.AppendInt(state, int64(a.remaining), 10)
		if a.reset > 0 {
			state = append(state, ";t="...)
			state = strconv.AppendInt(state, int64(a.reset), 10)
		}
	}
	if p := a.policy; p.Concurrency > 0 {
		policy = item(policy, policyConcurrency)
		policy = append(policy, ";q="...)
		policy = strconv.AppendInt(policy, int64(p.Concurrency), 10)
		policy = append(policy, `;qu="concurrent-requests"`...)
		state = item(state, policyConcurrency)
		state = append(state, ";r="...)
		state = strconv.AppendInt(state, int64(a.free), 10)
	}
	if len(policy) > 0 {
		h.SetBytesV("RateLimit-Policy", policy)
		h.SetBytesV("RateLimit", state)
	}
}

// detach hands the request's concurrency place to whoever ends the request
// later (a stream outlives its handler); serveHTTP then leaves it alone.
func (r *request) detach() func() {
	rel := r.release
	r.release = nil
	if rel == nil {
		return func() {}
	}
	return rel
}
