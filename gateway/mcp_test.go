package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// mcpConnect connects the SDK's own client to the gateway's /mcp over its
// streamable HTTP transport.
func mcpConnect(t *testing.T, url string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "gateway-test", Version: "0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url + "/mcp"}, nil)
	if err != nil {
		t.Fatalf("connect to %s/mcp: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func callRunPython(t *testing.T, cs *mcp.ClientSession, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_python", Arguments: args})
	if err != nil {
		t.Fatalf("CallTool: %v", err)
	}
	return res
}

// outputSchema compiles the output schema the tool advertises.
func outputSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	m, err := docSchema("McpRunPythonResult")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(m)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	if err := c.AddResource("mem://run_python/output.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("mem://run_python/output.json")
	if err != nil {
		t.Fatal(err)
	}
	return sch
}

// structured decodes a result's structured content, after checking it
// against the tool's output schema.
func structured(t *testing.T, res *mcp.CallToolResult) map[string]any {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := outputSchema(t).Validate(v); err != nil {
		t.Fatalf("structured content %s departs from the output schema: %v", b, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	return m
}

func TestMCPRunPython(t *testing.T) {
	png := []byte("\x89PNG\r\n\x1a\nfake")
	fe := &fakeExec{execute: func(ctx context.Context, req wire.Execute) (*client.Outcome, error) {
		switch {
		case strings.Contains(req.Script, "raise"):
			return &client.Outcome{
				Err:    &wire.Error{Type: wire.ErrException, Message: "ValueError: nope", Traceback: "Traceback (most recent call last):\nValueError: nope\n"},
				Stdout: []byte("before\n"),
				Done:   wire.Done{ExitReason: wire.ExitOK},
			}, nil
		case strings.Contains(req.Script, "busy"):
			return &client.Outcome{Err: &wire.Error{Type: wire.ErrBusy}, Done: wire.Done{ExitReason: wire.ExitOK}}, nil
		case strings.Contains(req.Script, "down"):
			return nil, errUnavail("socket closed")
		case strings.Contains(req.Script, "panic"):
			panic("boom")
		}
		return &client.Outcome{
			Result: []byte(`{"n":42}`),
			Stdout: []byte("hi\n"),
			Images: []wire.Image{{MediaType: "image/png", Data: png}},
			Files:  []wire.File{{Name: "a.csv", Data: []byte("x,y\n1,2\n")}, {Name: "b.bin", Data: []byte{0, 1, 0xff}}},
			Done:   wire.Done{ExitReason: wire.ExitOK, WallMS: 7, CPUMS: 5, PeakMemoryBytes: 1 << 20},
		}, nil
	}}
	ts := start(t, fe)
	cs := mcpConnect(t, ts.url)

	t.Run("list_tools", func(t *testing.T) {
		lt, err := cs.ListTools(context.Background(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(lt.Tools) != 1 || lt.Tools[0].Name != "run_python" {
			t.Fatalf("tools %+v", lt.Tools)
		}
		schema, _ := json.Marshal(lt.Tools[0].InputSchema)
		// The /execute request schema, its file items carried as $defs.
		for _, want := range []string{`"script"`, `"args"`, `"files"`, `"timeout"`, `"memory_mb"`, `"#/$defs/InputFile"`, `"required":["script"]`} {
			if !strings.Contains(string(schema), want) {
				t.Errorf("input schema lacks %s: %s", want, schema)
			}
		}
	})

	t.Run("result_images_files", func(t *testing.T) {
		res := callRunPython(t, cs, map[string]any{
			"script": "def main(n): return {'n': n}", "args": map[string]any{"n": 42},
			"files": []map[string]any{{"name": "in.txt", "content": "aGk=", "encoding": "base64"}}, "timeout": 5,
		})
		if res.IsError {
			t.Fatalf("tool error: %+v", res.Content)
		}
		req := fe.lastReq(t)
		if string(req.Args) != `{"n":42}` || len(req.Files) != 1 || string(req.Files[0].Data) != "hi" || req.Limits.TimeoutMS != 5000 || req.TraceID == "" {
			t.Fatalf("request passed on: %+v", req)
		}
		sc := structured(t, res)
		if r, _ := json.Marshal(sc["result"]); string(r) != `{"n":42}` || sc["stdout"] != "hi\n" {
			t.Fatalf("structured %v", sc)
		}
		files, _ := sc["files"].([]any)
		if len(files) != 2 || files[0].(map[string]any)["uri"] != "pyexec:output/a.csv" || files[0].(map[string]any)["content"] != nil {
			t.Fatalf("structured files %v", sc["files"])
		}
		if tr := sc["truncated"].(map[string]any); tr["files"] != false {
			t.Fatalf("truncated %v", tr)
		}
		if len(res.Content) != 4 {
			t.Fatalf("%d content items, want text, image, 2 resources", len(res.Content))
		}
		if txt, ok := res.Content[0].(*mcp.TextContent); !ok || !json.Valid([]byte(txt.Text)) {
			t.Fatalf("first item %#v", res.Content[0])
		}
		if im, ok := res.Content[1].(*mcp.ImageContent); !ok || im.MIMEType != "image/png" || string(im.Data) != string(png) {
			t.Fatalf("image item %#v", res.Content[1])
		}
		if r, ok := res.Content[2].(*mcp.EmbeddedResource); !ok || r.Resource.Text != "x,y\n1,2\n" || r.Resource.MIMEType != "text/csv" {
			t.Fatalf("csv item %#v", res.Content[2])
		}
		if r, ok := res.Content[3].(*mcp.EmbeddedResource); !ok || string(r.Resource.Blob) != "\x00\x01\xff" || r.Resource.URI != "pyexec:output/b.bin" {
			t.Fatalf("blob item %#v", res.Content[3])
		}
	})

	for _, tt := range []struct {
		name string
		args map[string]any
		typ  string
	}{
		{"exception", map[string]any{"script": "raise"}, "exception"},
		{"busy", map[string]any{"script": "busy"}, "busy"},
		{"unavailable", map[string]any{"script": "down"}, "unavailable"},
		// A panic in the tool is the service's failure, answered, and the
		// gateway lives on (the next calls below still work).
		{"panic", map[string]any{"script": "panic"}, "internal"},
		{"no_script", map[string]any{}, "invalid_request"},
		{"unknown_field", map[string]any{"script": "x", "nope": 1}, "invalid_request"},
		{"timeout_over_max", map[string]any{"script": "x", "timeout": 3600}, "invalid_request"},
		{"args_not_object", map[string]any{"script": "x", "args": []int{1}}, "invalid_request"},
	} {
		t.Run("error_"+tt.name, func(t *testing.T) {
			n := fe.calls()
			res := callRunPython(t, cs, tt.args)
			if !res.IsError {
				t.Fatalf("not a tool error: %+v", res)
			}
			sc := structured(t, res)
			e, _ := sc["error"].(map[string]any)
			if e["type"] != tt.typ || e["message"] == "" {
				t.Fatalf("structured %v, want type %s", sc, tt.typ)
			}
			txt, _ := res.Content[0].(*mcp.TextContent)
			if txt == nil || !strings.HasPrefix(txt.Text, tt.typ+": ") {
				t.Fatalf("text %#v", res.Content[0])
			}
			if tt.typ == "exception" && (e["traceback"] == nil || sc["stdout"] != "before\n" || !strings.Contains(txt.Text, "Traceback")) {
				t.Fatalf("exception answer %v / %q", sc, txt.Text)
			}
			if tt.typ == "invalid_request" && fe.calls() != n {
				t.Fatal("an invalid call reached the executor")
			}
		})
	}

	t.Run("access_log", func(t *testing.T) {
		if !strings.Contains(ts.logs.String(), `"mcp_tool":"run_python"`) {
			t.Fatalf("no access log line names the tool:\n%s", ts.logs.String())
		}
	})
}

// The transport's edges: GET (no standalone stream in stateless mode) and
// DELETE are the router's 405, a request without the streamable Accept is
// the SDK's 400, and a loopback connection with a foreign Host is refused
// (DNS rebinding protection).
func TestMCPTransportEdges(t *testing.T) {
	ts := start(t, &fakeExec{})
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"0"}}}`
	for _, m := range []string{"GET", "DELETE"} {
		r := do(t, m, ts.url+"/mcp", "", "", nil)
		checkError(t, r, 405, "method_not_allowed")
		if r.header.Get("Allow") != "OPTIONS, POST" {
			t.Errorf("%s Allow %q", m, r.header.Get("Allow"))
		}
	}
	if r := do(t, "POST", ts.url+"/mcp", "application/json", init, nil); r.status != 400 {
		t.Errorf("without Accept: %d %s, want 400", r.status, r.body)
	}
	accept := map[string]string{"Accept": "application/json, text/event-stream"}
	r := do(t, "POST", ts.url+"/mcp", "application/json", init, accept)
	if r.status != 200 || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") || !strings.Contains(r.body, `"serverInfo"`) {
		t.Fatalf("initialize: %d %s %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if r.header.Get(HeaderRequestID) == "" || r.header.Get("Mcp-Session-Id") != "" {
		t.Errorf("headers %v", r.header)
	}
	// Stateless: a call needs no initialize first (the curl of API.md).
	call := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"run_python","arguments":{"script":"def main(): return None"}}}`
	r = do(t, "POST", ts.url+"/mcp", "application/json", call, accept)
	if r.status != 200 || !strings.HasPrefix(r.body, `{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"{\"result\":null,`) ||
		!strings.Contains(r.body, `"structuredContent":{"result":null,"stdout":"","stderr":"","stats":{`) {
		t.Fatalf("tools/call without initialize: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest("POST", ts.url+"/mcp", strings.NewReader(init))
	req.Host = "evil.example"
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("foreign Host on loopback: %d, want 403", resp.StatusCode)
	}
}

// The document has /mcp's operations with the statuses the transport and the
// router give them.
func TestOpenAPIDocumentsMCP(t *testing.T) {
	doc := loadOpenAPI(t)
	for method, want := range map[string][]string{
		"post":    {"200", "202", "400", "403", "408", "413", "415", "429", "431", "500"},
		"options": {"204"},
	} {
		var op struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths["/mcp"][method], &op); err != nil {
			t.Fatalf("%s /mcp: %v", method, err)
		}
		for _, c := range want {
			if op.Responses[c] == nil {
				t.Errorf("%s /mcp does not document %s", method, c)
			}
		}
	}
	// The tool's input schema is built from the document.
	s, err := docSchema("ExecuteRequest")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s["$defs"].(map[string]any)["InputFile"]; !ok || s["additionalProperties"] != false {
		t.Fatalf("input schema %v", s)
	}
}

// The arguments are held to /execute's body limit: a script over
// -max-body-bytes is body_too_large (a tool error), while args and files
// have their room, as on /execute.
func TestMCPBodyLimit(t *testing.T) {
	fe := &fakeExec{}
	ts := start(t, fe, func(c *Config) { c.MaxBodyBytes = 1024 })
	cs := mcpConnect(t, ts.url)
	res := callRunPython(t, cs, map[string]any{"script": "#" + strings.Repeat("x", 2048) + "\ndef main(): return 1"})
	if e, _ := structured(t, res)["error"].(map[string]any); !res.IsError || e["type"] != "body_too_large" {
		t.Fatalf("oversized script: %+v", res.StructuredContent)
	}
	res = callRunPython(t, cs, map[string]any{"script": "def main(s): return 1", "args": map[string]any{"s": strings.Repeat("y", 4096)}})
	if res.IsError || fe.calls() != 1 {
		t.Fatalf("args within their room refused: %+v", res.StructuredContent)
	}
}
