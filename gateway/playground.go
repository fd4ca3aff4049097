package gateway

import (
	"bytes"
	"sync"

	"github.com/fasthttp/router"
	"github.com/python-executor/python-executor/gateway/playground"
	"github.com/python-executor/python-executor/wire"
	"github.com/valyala/fasthttp"
)

// renderPlayground renders the page once per process: it is the same for
// every gateway.
var renderPlayground = sync.OnceValues(playground.Render)

// routePlayground serves the playground page at GET and HEAD /. It is
// routed only with Config.Playground; otherwise / is the router's 404.
func (g *Gateway) routePlayground(r *router.Router) {
	page, err := renderPlayground()
	if err != nil {
		// Only a broken build gets here: the playground package's tests
		// render the page from the same embedded assets.
		g.log.WithError(err).Error("the playground page cannot be rendered; GET / answers internal")
	}
	h := func(ctx *fasthttp.RequestCtx) {
		if page == nil {
			writeError(ctx, &apiError{Type: wire.ErrInternal, Message: "internal error"}, nil, nil)
			return
		}
		hdr := &ctx.Response.Header
		hdr.Set("Content-Security-Policy", page.CSP)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "no-referrer")
		// Revalidate every time (the ETag makes that cheap): a gateway
		// upgraded in place serves its own page at once.
		hdr.Set("Cache-Control", "no-cache")
		hdr.Set("ETag", page.ETag)
		hdr.Set("Vary", "Accept-Encoding")
		if inm := ctx.Request.Header.Peek("If-None-Match"); len(inm) > 0 && etagMatches(inm, page.ETag) {
			ctx.SetStatusCode(fasthttp.StatusNotModified)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.SetContentType("text/html; charset=utf-8")
		if ctx.Request.Header.HasAcceptEncoding("gzip") {
			hdr.Set("Content-Encoding", "gzip")
			ctx.SetBody(page.Gzip)
			return
		}
		ctx.SetBody(page.HTML)
	}
	r.GET("/", h)
	r.HEAD("/", h)
}

// etagMatches reports whether an If-None-Match value names etag (a list of
// entity tags, weak ones compared weakly, or "*").
func etagMatches(inm []byte, etag string) bool {
	for _, t := range bytes.Split(inm, []byte(",")) {
		t = bytes.TrimSpace(t)
		t = bytes.TrimPrefix(t, []byte("W/"))
		if string(t) == "*" || string(t) == etag {
			return true
		}
	}
	return false
}
