//go:build !unix

package gateway

import "github.com/valyala/fasthttp"

// watchDisconnect does nothing where MSG_PEEK is unavailable: executions then
// run to their timeout after the client leaves.
func watchDisconnect(*fasthttp.RequestCtx, func()) (stop func()) {
	return func() {}
}

func watchDisconnectDetached(*fasthttp.RequestCtx, func()) (stop func()) {
	return func() {}
}
