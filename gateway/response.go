package gateway

import (
	"encoding/base64"
	"strconv"
	"unicode/utf8"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/valyala/fasthttp"
)

// Error types the gateway adds to the supervisor's (see wire.ErrorType and
// PROTOCOL.md). Like those, they are stable: never renamed.
const (
	errBodyTooLarge     wire.ErrorType = "body_too_large"
	errUnavailable      wire.ErrorType = "unavailable"
	errNotFound         wire.ErrorType = "not_found"
	errMethodNotAllowed wire.ErrorType = "method_not_allowed"
	errHeadersTooLarge  wire.ErrorType = "headers_too_large"
	errRequestTimeout   wire.ErrorType = "request_timeout"
	errTooManyConns     wire.ErrorType = "too_many_connections"
	// API keys (keys.go): no key or an unknown one; a key over its quota.
	errUnauthorized wire.ErrorType = "unauthorized"
	errRateLimited  wire.ErrorType = "rate_limited"
)

// statusFor is the one place that maps an error type to an HTTP status.
// Unknown types (a newer supervisor) are server errors.
func statusFor(t wire.ErrorType) int {
	switch t {
	case wire.ErrInvalidRequest, wire.ErrSyntax, wire.ErrMissingMain,
		wire.ErrInvalidResult, wire.ErrResultTooLarge, wire.ErrInvalidArgs:
		// The request or the script's own code is at fault; retrying the
		// same request gives the same answer.
		return fasthttp.StatusBadRequest
	case errNotFound:
		return fasthttp.StatusNotFound
	case errMethodNotAllowed:
		return fasthttp.StatusMethodNotAllowed
	case errRequestTimeout:
		return fasthttp.StatusRequestTimeout
	case errTooManyConns:
		// Written by the listener (conncap.go), before any request.
		return fasthttp.StatusTooManyRequests
	case errUnauthorized:
		return fasthttp.StatusUnauthorized
	case errRateLimited:
		// Retry-After and the RateLimit headers are set by keys_http.go.
		return fasthttp.StatusTooManyRequests
	case errBodyTooLarge:
		return fasthttp.StatusRequestEntityTooLarge
	case errHeadersTooLarge:
		return fasthttp.StatusRequestHeaderFieldsTooLarge
	case wire.ErrBusy, errUnavailable:
		return fasthttp.StatusServiceUnavailable
	default:
		// exception, exited, result_corrupted, timeout, memory_limit,
		// resource_limit, cancelled, internal, and anything unknown.
		return fasthttp.StatusInternalServerError
	}
}

// apiError is an error as the client sees it.
type apiError struct {
	Type      wire.ErrorType
	Message   string
	Traceback string
}

func invalidRequest(msg string) *apiError {
	return &apiError{Type: wire.ErrInvalidRequest, Message: msg}
}

// writeError answers with the error body shape shared by every error:
//
//	{"error": {"type": ..., "message": ..., "traceback": ...?}, "stdout": ..., "stderr": ...}
//
// A 503 also carries Retry-After.
func writeError(ctx *fasthttp.RequestCtx, e *apiError, stdout, stderr []byte) {
	status := statusFor(e.Type)
	if status == fasthttp.StatusServiceUnavailable {
		ctx.Response.Header.Set("Retry-After", "1")
	}
	writeJSON(ctx, status, errorJSON(e, stdout, stderr))
}

// errorJSON is the error body of writeError (also the structured content of
// an MCP tool error).
func errorJSON(e *apiError, stdout, stderr []byte) []byte {
	b := make([]byte, 0, 64+len(e.Message)+len(e.Traceback)+len(stdout)+len(stderr))
	b = append(b, `{"error":{"type":`...)
	b = appendString(b, []byte(e.Type))
	b = append(b, `,"message":`...)
	b = appendString(b, []byte(e.Message))
	if e.Traceback != "" {
		b = append(b, `,"traceback":`...)
		b = appendString(b, []byte(e.Traceback))
	}
	b = append(b, `},"stdout":`...)
	b = appendString(b, stdout)
	b = append(b, `,"stderr":`...)
	b = appendString(b, stderr)
	return append(b, '}')
}

// successBody is the 200 answer of POST /execute. The result bytes are
// inserted verbatim (the caller has checked they are one JSON value); the
// field order is fixed.
func successBody(out *client.Outcome) []byte { return appendSuccess(out, false) }

// appendSuccess is successBody, with the output files by URI when byURI
// (MCP's structured content; see appendFiles).
func appendSuccess(out *client.Outcome, byURI bool) []byte {
	b := make([]byte, 0, 160+len(out.Result)+len(out.Stdout)+len(out.Stderr)+imagesLen(out.Images))
	b = append(b, `{"result":`...)
	b = append(b, out.Result...)
	b = append(b, `,"stdout":`...)
	b = appendString(b, out.Stdout)
	b = append(b, `,"stderr":`...)
	b = appendString(b, out.Stderr)
	b = append(b, `,"stats":{"wall_ms":`...)
	b = strconv.AppendInt(b, out.Done.WallMS, 10)
	b = append(b, `,"cpu_ms":`...)
	b = strconv.AppendInt(b, out.Done.CPUMS, 10)
	b = append(b, `,"peak_memory_bytes":`...)
	b = strconv.AppendInt(b, out.Done.PeakMemoryBytes, 10)
	if out.Done.QueueMS > 0 {
		// Optional: only an execution that waited for a slot says so.
		b = append(b, `,"queue_ms":`...)
		b = strconv.AppendInt(b, out.Done.QueueMS, 10)
	}
	b = append(b, `},"truncated":{"stdout":`...)
	b = strconv.AppendBool(b, out.Done.StdoutTruncated)
	b = append(b, `,"stderr":`...)
	b = strconv.AppendBool(b, out.Done.StderrTruncated)
	// Optional (args and files): only an execution that left files in
	// output/ has "files" and "truncated.files".
	withFiles := len(out.Files) > 0 || out.FilesTruncated
	if withFiles {
		b = append(b, `,"files":`...)
		b = strconv.AppendBool(b, out.FilesTruncated)
	}
	if out.ImagesTruncated {
		// Optional: present only when figures were left out for the caps.
		b = append(b, `,"images":true`...)
	}
	b = append(b, '}')
	if withFiles {
		b = appendFiles(b, out, byURI)
	}
	b = appendImages(b, out.Images)
	b = append(b, '}')
	return b
}

// imagesLen is about what appendImages adds, to size the body once.
func imagesLen(images []wire.Image) int {
	n := 0
	for _, im := range images {
		n += 48 + len(im.MediaType) + base64.StdEncoding.EncodedLen(len(im.Data))
	}
	return n
}

// appendImages adds the optional "images" key: the figures main() left
// open, each {"media_type", "data"} with the bytes in standard base64. The
// supervisor has checked each is a PNG within the caps.
func appendImages(b []byte, images []wire.Image) []byte {
	if len(images) == 0 {
		return b
	}
	b = append(b, `,"images":[`...)
	for i, im := range images {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"media_type":`...)
		b = appendString(b, []byte(im.MediaType))
		b = append(b, `,"data":"`...)
		b = base64.StdEncoding.AppendEncode(b, im.Data)
		b = append(b, `"}`...)
	}
	return append(b, ']')
}

func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.SetContentType(contentTypeJSON)
	ctx.SetBody(body)
}

const contentTypeJSON = "application/json"

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD, so
// whatever bytes a script printed, the answer stays valid JSON. Control
// characters and U+2028/U+2029 are escaped.
func appendString(dst, s []byte) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
