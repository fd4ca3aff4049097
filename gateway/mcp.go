package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/sirupsen/logrus"
	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The Model Context Protocol endpoint (API.md, "POST /mcp"): one tool,
// run_python, with the inputs and outputs of POST /execute, served by the
// official Go SDK's streamable HTTP handler.
//
// The handler is net/http; the gateway is fasthttp. fasthttpadaptor buffers a
// net/http answer and sends it when the handler returns, so an SSE stream
// that must reach the client while the handler still runs is not something
// to build on. The handler therefore runs stateless (no Mcp-Session-Id, no
// server-to-client requests: run_python needs none) and answers each POST
// with one application/json body (StreamableHTTPOptions.JSONResponse), which
// the adaptor carries whole. GET (the optional standalone SSE stream) and
// DELETE (ending a session) are the router's 405, as the transport allows.

// mcpToolName is the one tool's name.
const mcpToolName = "run_python"

const mcpToolDescription = `Run a Python 3.11 script in an isolated sandbox (no network, private /tmp, CPU, memory and time limits) and return what main() returns.

The script must define main(); its return value, encoded as JSON, is the result. With "args" (a JSON object) main(**args) is called. "files" are written to the script's working directory before it runs; files the script writes to output/ come back as embedded resources. matplotlib figures still open when main() returns come back as PNG images. numpy, pandas and matplotlib are installed.

The inputs are those of the service's POST /execute: the optional limits (timeout in seconds, memory_mb, ...) may only lower the server's limits. The structured result has "result", "stdout", "stderr", "stats" and "truncated"; a failure (the script raised, timed out, exceeded its memory, ...) is a tool error whose structured content is {"error": {"type", "message", "traceback"?}, "stdout", "stderr"}.`

// mcpCall is the per-HTTP-request state the tool handler reads from its
// context: the gateway's request (id, logger, access-log fields) and the
// execution's parent context, which ends when the client goes away.
type mcpCall struct {
	r   *request
	ctx context.Context

	// mu guards r.fields: the tool handler runs on the SDK's goroutine
	// and may still be running when a client that went away has been
	// answered; after done it no longer touches them.
	mu   sync.Mutex
	done bool
}

type mcpCallKey struct{}

// setFields adds fields to the request's access-log line unless the
// request was already logged.
func (c *mcpCall) setFields(kv map[string]any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	for k, v := range kv {
		c.r.fields[k] = v
	}
}

// newMCPHandler builds the MCP server and returns the fasthttp handler of
// POST /mcp.
func (g *Gateway) newMCPHandler() fasthttp.RequestHandler {
	// The tool's schemas are the document's (one source for both
	// endpoints). The document is embedded and checked by the tests: a
	// broken one is a build defect.
	inSchema, err := docSchema("ExecuteRequest")
	if err != nil {
		panic(fmt.Sprintf("mcp: %v", err))
	}
	outSchema, err := docSchema("McpRunPythonResult")
	if err != nil {
		panic(fmt.Sprintf("mcp: %v", err))
	}
	sdkLog := slog.New(logrusHandler{g.log.WithField("component", "mcp")})
	server := mcp.NewServer(&mcp.Implementation{Name: "python-executor", Title: "Python executor", Version: buildVersion()},
		&mcp.ServerOptions{Logger: sdkLog})
	server.AddTool(&mcp.Tool{
		Name:         mcpToolName,
		Title:        "Run Python",
		Description:  mcpToolDescription,
		InputSchema:  inSchema,
		OutputSchema: outSchema,
		Annotations: &mcp.ToolAnnotations{
			// Each run is isolated: it changes nothing outside itself and
			// reaches nothing outside the sandbox.
			ReadOnlyHint:  true,
			OpenWorldHint: new(false),
		},
	}, g.runPython)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return server }, &mcp.StreamableHTTPOptions{
		Stateless:    true,
		JSONResponse: true,
		// fasthttp has already bounded and read the body, with the limit
		// of every request (the body limit plus the room of args and
		// files); the SDK's own bound is the same, so never the tighter.
		// runPython checks the arguments as /execute checks its body.
		MaxRequestBodyBytes: int64(g.cfg.MaxBodyBytes + ioBodyRoom()),
		Logger:              sdkLog,
	})
	return func(ctx *fasthttp.RequestCtx) {
		r := g.req(ctx)
		runCtx, cancel := context.WithCancelCause(g.base)
		defer cancel(nil)
		stop := watchDisconnect(ctx, func() { cancel(errClientGone) })
		defer stop()
		call := &mcpCall{r: r, ctx: runCtx}
		c := context.WithValue(runCtx, mcpCallKey{}, call)
		// The SDK's DNS-rebinding protection (a loopback connection with a
		// Host that is not loopback is refused) looks for the local
		// address where net/http puts it; the adaptor does not.
		c = context.WithValue(c, http.LocalAddrContextKey, ctx.LocalAddr())
		fasthttpadaptor.NewFastHTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			h.ServeHTTP(w, req.WithContext(c))
		}))(ctx)
		call.mu.Lock()
		call.done = true
		call.mu.Unlock()
	}
}

// buildVersion is the module version the binary was built from, for the
// MCP server's implementation info.
func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
		return bi.Main.Version
	}
	return "devel"
}

// runPython is the run_python tool: the arguments are an /execute body,
// parsed by the same parser; the answer carries what /execute's does.
// Every failure, the caller's included, is a tool error (IsError) with the
// /execute error body as structured content, so an agent sees the type
// and message and can correct itself.
func (g *Gateway) runPython(ctx context.Context, treq *mcp.CallToolRequest) (res *mcp.CallToolResult, err error) {
	call, ok := ctx.Value(mcpCallKey{}).(*mcpCall)
	if !ok {
		// Unreachable: every MCP request comes through newMCPHandler.
		return nil, errors.New("run_python: no request state")
	}
	r := call.r
	defer func() {
		// The SDK runs tool handlers on goroutines of its own, outside
		// the router's panic handler: a panic here would end the gateway.
		if v := recover(); v != nil {
			r.log.WithField("panic", fmt.Sprint(v)).WithField("stack", string(debug.Stack())).Error("run_python panicked")
			res, err = g.toolError(call, internalError(r.id), nil, nil), nil
		}
	}()
	call.setFields(map[string]any{"mcp_tool": mcpToolName})
	args := []byte(treq.Params.Arguments)
	if len(args) == 0 || string(args) == "null" {
		args = []byte("{}")
	}
	req, e := parseExecute(args, g.cfg.MaxTimeout, g.cfg.MaxBodyBytes)
	if e != nil {
		return g.toolError(call, e, nil, nil), nil
	}
	req.TraceID = r.id
	if g.draining.Load() {
		return g.toolError(call, &apiError{Type: errUnavailable, Message: "the server is shutting down; retry"}, nil, nil), nil
	}

	g.running.Add(1)
	defer g.running.Add(-1)
	runCtx, cancelLate := g.bound(call.ctx, &req)
	defer cancelLate()
	out, err := g.exec.Execute(runCtx, req, func(client.Event) {})
	switch {
	case err != nil:
		return g.toolError(call, g.failure(r, err, context.Cause(runCtx)), nil, nil), nil
	case out == nil:
		r.log.Error("executor returned neither an outcome nor an error")
		return g.toolError(call, internalError(r.id), nil, nil), nil
	}
	call.setFields(map[string]any{
		"exit_reason":       string(out.Done.ExitReason),
		"wall_ms":           out.Done.WallMS,
		"cpu_ms":            out.Done.CPUMS,
		"peak_memory_bytes": out.Done.PeakMemoryBytes,
		"queue_ms":          out.Done.QueueMS,
	})
	if e := g.outcomeFailure(r, out); e != nil {
		return g.toolError(call, e, out.Stdout, out.Stderr), nil
	}
	return mcpSuccess(out)
}

// toolError answers a failure as a tool error: the text says the type and
// message (and the traceback), the structured content is /execute's error
// body.
func (g *Gateway) toolError(call *mcpCall, e *apiError, stdout, stderr []byte) *mcp.CallToolResult {
	call.setFields(map[string]any{"error_type": string(e.Type)})
	var text strings.Builder
	text.WriteString(string(e.Type) + ": " + e.Message)
	if e.Traceback != "" {
		text.WriteString("\n\n" + e.Traceback)
	}
	for _, s := range []struct {
		name string
		b    []byte
	}{{"stdout", stdout}, {"stderr", stderr}} {
		if len(s.b) > 0 {
			text.WriteString("\n\n" + s.name + ":\n" + strings.ToValidUTF8(string(s.b), "\ufffd"))
		}
	}
	return &mcp.CallToolResult{
		IsError:           true,
		Content:           []mcp.Content{&mcp.TextContent{Text: text.String()}},
		StructuredContent: json.RawMessage(errorJSON(e, stdout, stderr)),
	}
}

// mcpSuccess answers a result. The structured content is /execute's 200
// body with the bulky parts moved out: each image is an ImageContent and
// each output file an embedded resource, and "files" lists the files'
// name, size, media type and resource URI instead of their content. The
// first content item is the structured content as text, for clients that
// read only text.
func mcpSuccess(out *client.Outcome) (*mcp.CallToolResult, error) {
	lean := *out
	lean.Images = nil
	body := appendSuccess(&lean, true)
	if !json.Valid(body) {
		return nil, errors.New("run_python: built an invalid structured result")
	}
	content := []mcp.Content{&mcp.TextContent{Text: string(body)}}
	for _, im := range out.Images {
		content = append(content, &mcp.ImageContent{MIMEType: im.MediaType, Data: im.Data})
	}
	for _, f := range out.Files {
		rc := &mcp.ResourceContents{URI: outputURI(f.Name), MIMEType: wire.MediaType(f.Name)}
		if textual(rc.MIMEType) && utf8.Valid(f.Data) {
			rc.Text = string(f.Data)
		} else {
			rc.Blob = f.Data
		}
		content = append(content, &mcp.EmbeddedResource{Resource: rc})
	}
	return &mcp.CallToolResult{Content: content, StructuredContent: json.RawMessage(body)}, nil
}

// outputURI names an output file as a resource: pyexec:output/<name>, the
// path the script wrote it to, escaped. The resource exists only in the
// answer (the service keeps nothing), so the URI is a name, not a link.
func outputURI(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return "pyexec:output/" + strings.Join(parts, "/")
}

// textual reports whether a media type is text a client can show as is.
func textual(mt string) bool {
	switch mt {
	case "application/json", "application/x-ndjson", "application/xml", "image/svg+xml":
		return true
	}
	return strings.HasPrefix(mt, "text/")
}

// docSchema is the component schema name of openapi.json as a standalone
// JSON Schema: the component schemas it refers to are carried along as
// $defs.
func docSchema(name string) (map[string]any, error) {
	var doc struct {
		Components struct {
			Schemas map[string]any `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		return nil, fmt.Errorf("openapi.json: %w", err)
	}
	const prefix = "#/components/schemas/"
	defs := map[string]any{}
	var pending []string
	var rewrite func(v any) any
	rewrite = func(v any) any {
		switch v := v.(type) {
		case map[string]any:
			m := make(map[string]any, len(v))
			for k, x := range v {
				if s, ok := x.(string); ok && k == "$ref" && strings.HasPrefix(s, prefix) {
					ref := strings.TrimPrefix(s, prefix)
					if _, seen := defs[ref]; !seen {
						defs[ref] = nil
						pending = append(pending, ref)
					}
					m[k] = "#/$defs/" + ref
					continue
				}
				m[k] = rewrite(x)
			}
			return m
		case []any:
			a := make([]any, len(v))
			for i, x := range v {
				a[i] = rewrite(x)
			}
			return a
		}
		return v
	}
	root, ok := doc.Components.Schemas[name]
	if !ok {
		return nil, fmt.Errorf("openapi.json has no %s schema", name)
	}
	schema, _ := rewrite(root).(map[string]any)
	for len(pending) > 0 {
		ref := pending[0]
		pending = pending[1:]
		s, ok := doc.Components.Schemas[ref]
		if !ok {
			return nil, fmt.Errorf("openapi.json: %s refers to missing schema %s", name, strconv.Quote(ref))
		}
		defs[ref] = rewrite(s)
	}
	if len(defs) > 0 {
		schema["$defs"] = defs
	}
	if schema["type"] != "object" {
		// MCP wants object schemas for a tool's input and output.
		return nil, fmt.Errorf("openapi.json: %s is not an object schema", name)
	}
	return schema, nil
}

// logrusHandler sends the SDK's log records (slog) to the gateway's log, so
// they have its format and fields.
type logrusHandler struct{ log *logrus.Entry }

func logrusLevel(l slog.Level) logrus.Level {
	switch {
	case l >= slog.LevelError:
		return logrus.ErrorLevel
	case l >= slog.LevelWarn:
		return logrus.WarnLevel
	case l >= slog.LevelInfo:
		return logrus.InfoLevel
	}
	return logrus.DebugLevel
}

func (h logrusHandler) Enabled(_ context.Context, l slog.Level) bool {
	return h.log.Logger.IsLevelEnabled(logrusLevel(l))
}

func (h logrusHandler) Handle(_ context.Context, rec slog.Record) error {
	e := h.log
	rec.Attrs(func(a slog.Attr) bool {
		e = e.WithField(a.Key, a.Value.Resolve().Any())
		return true
	})
	e.Log(logrusLevel(rec.Level), rec.Message)
	return nil
}

func (h logrusHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	e := h.log
	for _, a := range attrs {
		e = e.WithField(a.Key, a.Value.Resolve().Any())
	}
	return logrusHandler{e}
}

// WithGroup flattens groups: the SDK does not use them.
func (h logrusHandler) WithGroup(string) slog.Handler { return h }
