package gateway

import (
	_ "embed"

	"github.com/valyala/fasthttp"
)

// openAPIDoc is the OpenAPI 3.1 description of this API. The file in the
// repository is the one source: the binary serves it verbatim, and the
// tests validate every answer they get against it (package
// gateway/apispec).
//
//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document served at GET /openapi.json.
func OpenAPI() []byte { return append([]byte(nil), openAPIDoc...) }

func (g *Gateway) handleOpenAPI(ctx *fasthttp.RequestCtx) {
	writeJSON(ctx, fasthttp.StatusOK, openAPIDoc)
}
