package gateway

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/valyala/fasthttp"
)

// HeaderRequestID carries the request id, in requests and in every response.
const HeaderRequestID = "X-Request-Id"

// maxRequestIDLen bounds a client-supplied request id.
const maxRequestIDLen = 128

// requestID returns the request's X-Request-Id when it is sane (1 to 128
// characters from [A-Za-z0-9._:/+=@-], so it is safe in logs and headers),
// else a new random id of 32 hex digits.
func requestID(h *fasthttp.RequestHeader) string {
	if v := h.Peek(HeaderRequestID); saneRequestID(v) {
		return string(v)
	}
	return newRequestID()
}

func saneRequestID(v []byte) bool {
	if len(v) == 0 || len(v) > maxRequestIDLen {
		return false
	}
	for _, c := range v {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '-', c == '_', c == '.', c == ':', c == '/', c == '+', c == '=', c == '@':
		default:
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return hex.EncodeToString(b[:])
}
