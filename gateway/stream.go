package gateway

import (
	"bufio"
	"context"
	"errors"
	"mime"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"
)

// The streamed answer of POST /execute (API.md, "Streaming (NDJSON)"): one
// JSON object per line, an output chunk per line as the supervisor sends it,
// then a final line holding the non-streamed answer.

const contentTypeNDJSON = "application/x-ndjson"

// streamQueue is how many output chunks wait between the execution and the
// HTTP writer. Past it the execution's event callback waits: the Go client
// keeps reading the supervisor and holds the rest, which the supervisor's
// output caps bound, so a slow reader never slows or grows the supervisor.
const streamQueue = 16

// wantsStream reports whether the request's Accept lists the NDJSON media
// type with a non-zero quality.
func wantsStream(h *fasthttp.RequestHeader) bool {
	accept := h.Peek("Accept")
	if len(accept) == 0 {
		return false
	}
	for _, part := range strings.Split(string(accept), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil || mt != contentTypeNDJSON {
			continue
		}
		if q, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(q, 64); err != nil || f <= 0 {
				continue
			}
		}
		return true
	}
	return false
}

// plainTypes are the outcomes that mean the execution never ran. When one
// comes back before any output, it keeps its ordinary status and JSON body
// even on a streamed request: the headers have not been sent yet.
var plainTypes = map[string]bool{
	string(wire.ErrBusy):           true,
	string(errUnavailable):         true,
	string(wire.ErrInvalidRequest): true,
}

// stream runs req and answers it as NDJSON. It owns the execution from here:
// the execution outlives the handler (fasthttp calls the body writer after
// the handler returns), so the context, the disconnect watcher and the
// running count are released by whoever ends it, the handler or the writer.
func (g *Gateway) stream(ctx *fasthttp.RequestCtx, r *request, req wire.Execute) {
	g.running.Add(1)
	// The API key's concurrency place is held until the stream ends.
	release := r.detach()
	runCtx, cancel := context.WithCancelCause(g.base)
	runCtx, cancelLate := g.bound(runCtx, &req)
	stopWatch := watchDisconnectDetached(ctx, func() { cancel(errClientGone) })
	finish := func() {
		stopWatch()
		cancelLate()
		cancel(nil)
		g.running.Add(-1)
		release()
	}

	events := make(chan client.Event, streamQueue)
	done := make(chan struct{})
	var out *client.Outcome
	var err error
	go func() {
		defer close(done)
		out, err = g.exec.Execute(runCtx, req, func(ev client.Event) {
			select {
			case events <- ev:
			case <-runCtx.Done():
				// Nobody takes it any more: the reader is gone or the
				// execution is over.
			}
		})
	}()

	// Hold the headers back until there is something to stream, so that an
	// execution that never ran is answered as without streaming.
	var first []client.Event
	select {
	case ev := <-events:
		first = append(first, ev)
	case <-done:
		select {
		case ev := <-events:
			first = append(first, ev)
		default:
		}
	}
	// The final answer, built once by the same code as a plain answer, in a
	// scratch context: here when the execution ended before any output, else
	// by the writer at the end. fr collects its log fields.
	var final *fasthttp.RequestCtx
	fr := &request{id: r.id, log: r.log, fields: logrus.Fields{}}
	if len(first) == 0 {
		final = new(fasthttp.RequestCtx)
		g.respond(final, fr, out, err, context.Cause(runCtx))
		typ, _ := fr.fields["error_type"].(string)
		if plainTypes[typ] || errors.Is(context.Cause(runCtx), errClientGone) {
			finish()
			for k, v := range fr.fields {
				r.fields[k] = v
			}
			copyAnswer(ctx, final)
			return
		}
	}

	r.fields["stream"] = true
	ctx.SetStatusCode(fasthttp.StatusOK)
	ctx.SetContentType(contentTypeNDJSON)
	// The server's write timeout is per answer; a stream lasts as long as
	// its execution. Bound the whole answer instead: a reader that has not
	// taken it all by then loses the connection.
	due, _ := runCtx.Deadline()
	_ = ctx.SetWriteDeadline(due.Add(g.cfg.WriteTimeout))
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		defer finish()
		// The handler has returned and logged; the line at the end says
		// how the stream ended, with fr's fields (the handler's are no
		// longer ours to touch).
		var enc chunkEncoder
		broken := false
		put := func(b []byte, flush bool) {
			if broken || len(b) == 0 {
				return
			}
			_, werr := w.Write(b)
			if werr == nil && flush {
				werr = w.Flush()
			}
			if werr != nil {
				// The reader is gone or too slow (write deadline): stop the
				// execution; what is left is drained and dropped.
				broken = true
				cancel(errClientGone)
			}
		}
		for _, ev := range first {
			put(enc.line(ev), len(events) == 0)
		}
	loop:
		for {
			select {
			case ev := <-events:
				// Flush when nothing else waits: one write per burst.
				put(enc.line(ev), len(events) == 0)
			case <-done:
				for {
					select {
					case ev := <-events:
						put(enc.line(ev), false)
					default:
						break loop
					}
				}
			}
		}
		put(enc.rest(), false)

		if final == nil {
			final = new(fasthttp.RequestCtx)
			g.respond(final, fr, out, err, context.Cause(runCtx))
		}
		status := final.Response.StatusCode()
		put(finalLine(status, final.Response.Body()), true)
		fr.fields["status"] = status
		fr.fields["cut_off"] = broken
		fr.log.WithFields(fr.fields).Info("stream ended")
	})
}

// copyAnswer moves the answer built in sc to ctx, keeping ctx's headers
// (the request id).
func copyAnswer(ctx, sc *fasthttp.RequestCtx) {
	ctx.SetStatusCode(sc.Response.StatusCode())
	ctx.SetContentTypeBytes(sc.Response.Header.ContentType())
	if v := sc.Response.Header.Peek("Retry-After"); len(v) > 0 {
		ctx.Response.Header.SetBytesV("Retry-After", v)
	}
	if sc.Response.ConnectionClose() {
		ctx.SetConnectionClose()
	}
	ctx.SetBody(sc.Response.Body())
}

// finalLine is the stream's last line: the plain answer's status and body.
func finalLine(status int, body []byte) []byte {
	b := make([]byte, 0, 48+len(body))
	b = append(b, `{"event":"done","status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"response":`...)
	b = append(b, body...)
	return append(b, "}\n"...)
}

// chunkEncoder turns output chunks into lines. A UTF-8 character split
// between two chunks of a stream is held back until its end arrives, so the
// chunks joined read as the final answer's stdout/stderr does.
type chunkEncoder struct {
	carry [2][]byte // stdout, stderr: the start of a character cut off
}

func streamIndex(t wire.Type) int {
	if t == wire.TypeStderr {
		return 1
	}
	return 0
}

var streamNames = [2]string{"stdout", "stderr"}

// line encodes one chunk; nil when all of it is held back.
func (e *chunkEncoder) line(ev client.Event) []byte {
	i := streamIndex(ev.Type)
	data := ev.Data
	if len(e.carry[i]) > 0 {
		data = append(e.carry[i], data...)
		e.carry[i] = nil
	}
	if k := incompleteTail(data); k > 0 {
		e.carry[i] = append([]byte(nil), data[len(data)-k:]...)
		data = data[:len(data)-k]
	}
	return chunkLine(i, data)
}

// rest encodes what is still held back at the end (a cut-off character,
// which becomes U+FFFD as it does in the final answer).
func (e *chunkEncoder) rest() []byte {
	var b []byte
	for i := range e.carry {
		b = append(b, chunkLine(i, e.carry[i])...)
		e.carry[i] = nil
	}
	return b
}

func chunkLine(i int, data []byte) []byte {
	if len(data) == 0 {
		return nil
	}
	b := make([]byte, 0, 32+len(data)+len(data)/8)
	b = append(b, `{"event":"`...)
	b = append(b, streamNames[i]...)
	b = append(b, `","data":`...)
	b = appendString(b, data)
	return append(b, "}\n"...)
}

// incompleteTail returns how many bytes at the end of b are the valid start
// of a UTF-8 character that is not complete yet (0 to 3).
func incompleteTail(b []byte) int {
	for k := 1; k <= utf8.UTFMax-1 && k <= len(b); k++ {
		if utf8.RuneStart(b[len(b)-k]) {
			if utf8.FullRune(b[len(b)-k:]) {
				return 0
			}
			return k
		}
	}
	return 0
}
