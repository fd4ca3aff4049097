package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/python-executor/python-executor/gateway/apispec"
	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

// mcpSession connects the MCP SDK's own client, over its streamable HTTP
// client transport, to the gateway's /mcp. Every HTTP answer it gets is
// checked against openapi.json like the other suites' answers.
func mcpSession(t *testing.T, base string) *mcp.ClientSession {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c := mcp.NewClient(&mcp.Implementation{Name: "pyexec-e2e", Version: "0"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:   base + "/mcp",
		HTTPClient: &http.Client{Transport: specChecked(nil), Timeout: 120 * time.Second},
	}, nil)
	if err != nil {
		t.Fatalf("MCP connect to %s/mcp: %v", base, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// mcpRun calls run_python with args (an /execute body).
func mcpRun(t *testing.T, cs *mcp.ClientSession, args map[string]any) *mcp.CallToolResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_python", Arguments: args})
	if err != nil {
		t.Fatalf("run_python: %v", err)
	}
	return res
}

// mcpAnswer is run_python's structured content: /execute's answer with the
// file contents and images moved to content items.
type mcpAnswer struct {
	Result json.RawMessage `json:"result"`
	Stdout string          `json:"stdout"`
	Stderr string          `json:"stderr"`
	Stats  struct {
		WallMS int64 `json:"wall_ms"`
	} `json:"stats"`
	Truncated map[string]bool `json:"truncated"`
	Files     []struct {
		Name      string `json:"name"`
		Size      int    `json:"size"`
		MediaType string `json:"media_type"`
		URI       string `json:"uri"`
	} `json:"files"`
	Error *struct {
		Type      string `json:"type"`
		Message   string `json:"message"`
		Traceback string `json:"traceback"`
	} `json:"error"`
}

func mcpDecode(t *testing.T, res *mcp.CallToolResult) mcpAnswer {
	t.Helper()
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	spec, err := apispec.Load()
	if err != nil {
		t.Fatal(err)
	}
	sch, err := spec.Schema("/components/schemas/McpRunPythonResult")
	if err != nil {
		t.Fatal(err)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(v); err != nil {
		t.Fatalf("structured content %s departs from the tool's output schema: %v", b, err)
	}
	var a mcpAnswer
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
	if len(res.Content) == 0 {
		t.Fatalf("no content items: %s", b)
	}
	if _, ok := res.Content[0].(*mcp.TextContent); !ok {
		t.Fatalf("first content item is %T, want text", res.Content[0])
	}
	return a
}

// wantToolError asserts a tool error of type typ.
func wantToolError(t *testing.T, res *mcp.CallToolResult, typ string) mcpAnswer {
	t.Helper()
	a := mcpDecode(t, res)
	if !res.IsError || a.Error == nil || a.Error.Type != typ || a.Error.Message == "" {
		t.Fatalf("want a tool error of type %s, got isError=%v %+v", typ, res.IsError, a)
	}
	if txt := res.Content[0].(*mcp.TextContent).Text; !strings.HasPrefix(txt, typ+": "+a.Error.Message) {
		t.Fatalf("text %q does not lead with the type and message", txt)
	}
	return a
}

// TestMCP is issue 13 item 3: an agent uses the sandbox through /mcp with
// the MCP SDK's own client, on each engine: the tool's inputs are
// /execute's, its answers carry the result, output, files and images, and
// failures are tool errors with /execute's types.
func TestMCP(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		st := supervisortest.StartStack(t, engine)
		base := st.Gateway.URL
		cs := mcpSession(t, base)

		t.Run("tool_is_listed_with_the_execute_schema", func(t *testing.T) {
			lt, err := cs.ListTools(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(lt.Tools) != 1 || lt.Tools[0].Name != "run_python" || lt.Tools[0].Description == "" || lt.Tools[0].OutputSchema == nil {
				t.Fatalf("tools: %+v", lt.Tools)
			}
			var got struct {
				Properties map[string]any `json:"properties"`
				Required   []string       `json:"required"`
			}
			b, _ := json.Marshal(lt.Tools[0].InputSchema)
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			var doc struct {
				Components struct {
					Schemas map[string]struct {
						Properties map[string]any `json:"properties"`
					} `json:"schemas"`
				} `json:"components"`
			}
			resp, err := httpClient.Get(base + "/openapi.json")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			want := keys(doc.Components.Schemas["ExecuteRequest"].Properties)
			if g := keys(got.Properties); !slices.Equal(g, want) || !slices.Equal(got.Required, []string{"script"}) {
				t.Fatalf("input schema properties %v required %v, want /execute's %v and [script]", g, got.Required, want)
			}
		})

		t.Run("same_answer_as_execute", func(t *testing.T) {
			body := map[string]any{"script": "import sys\ndef main(a, b):\n    print('sum', a + b)\n    print('warn', file=sys.stderr)\n    return {'sum': a + b, 'pi': 3.25}\n",
				"args": map[string]any{"a": 2, "b": 40}, "timeout": 10}
			res := mcpRun(t, cs, body)
			a := mcpDecode(t, res)
			if res.IsError {
				t.Fatalf("tool error: %+v", a)
			}
			r := execute(t, base, body["script"].(string), map[string]any{"args": body["args"], "timeout": 10})
			r.wantOK(t)
			if !sameJSON(a.Result, r.Body.Result) || !sameJSON(a.Result, []byte(`{"sum":42,"pi":3.25}`)) {
				t.Fatalf("MCP result %s, /execute result %s", a.Result, r.Body.Result)
			}
			if a.Stdout != r.Body.Stdout || a.Stdout != "sum 42\n" || a.Stderr != "warn\n" || a.Stats.WallMS <= 0 || a.Truncated["stdout"] {
				t.Fatalf("answer %+v", a)
			}
			// The text item is the structured content as JSON text, with
			// the result exactly as the runner encoded it, as /execute has
			// it (the client decodes structuredContent into a map, which
			// loses the key order).
			var fromText mcpAnswer
			if err := json.Unmarshal([]byte(res.Content[0].(*mcp.TextContent).Text), &fromText); err != nil || string(fromText.Result) != string(r.Body.Result) {
				t.Fatalf("text item %q (%v), /execute result %s", res.Content[0].(*mcp.TextContent).Text, err, r.Body.Result)
			}
		})

		t.Run("files_in_and_out", func(t *testing.T) {
			res := mcpRun(t, cs, map[string]any{
				"script": "import os\ndef main():\n    data = open('in.txt').read()\n    os.makedirs('output', exist_ok=True)\n    open('output/report.csv', 'w').write('n,len\\n1,' + str(len(data)) + '\\n')\n    open('output/raw.bin', 'wb').write(bytes([0, 255, 1]))\n    return data.upper()\n",
				"files":  []map[string]any{{"name": "in.txt", "content": base64.StdEncoding.EncodeToString([]byte("hello")), "encoding": "base64"}},
			})
			a := mcpDecode(t, res)
			if res.IsError || string(a.Result) != `"HELLO"` {
				t.Fatalf("answer %+v", a)
			}
			if len(a.Files) != 2 || a.Truncated["files"] {
				t.Fatalf("files %+v truncated %v", a.Files, a.Truncated)
			}
			got := map[string]*mcp.ResourceContents{}
			for _, c := range res.Content[1:] {
				if r, ok := c.(*mcp.EmbeddedResource); ok {
					got[r.Resource.URI] = r.Resource
				}
			}
			csv, raw := got["pyexec:output/report.csv"], got["pyexec:output/raw.bin"]
			if csv == nil || csv.Text != "n,len\n1,5\n" || csv.MIMEType != "text/csv" {
				t.Fatalf("report.csv resource %+v (all: %v)", csv, got)
			}
			if raw == nil || string(raw.Blob) != "\x00\xff\x01" || raw.MIMEType != "application/octet-stream" {
				t.Fatalf("raw.bin resource %+v", raw)
			}
		})

		t.Run("image", func(t *testing.T) {
			res := mcpRun(t, cs, map[string]any{"script": dfPlotScript})
			a := mcpDecode(t, res)
			if res.IsError || !sameJSON(a.Result, []byte(`{"total_sales":955}`)) {
				t.Fatalf("answer %+v", a)
			}
			var imgs []*mcp.ImageContent
			for _, c := range res.Content {
				if im, ok := c.(*mcp.ImageContent); ok {
					imgs = append(imgs, im)
				}
			}
			if len(imgs) != 1 || imgs[0].MIMEType != "image/png" {
				t.Fatalf("%d images: %+v", len(imgs), res.Content)
			}
			if w, h := pngSize(t, imgs[0].Data); w != 640 || h != 480 {
				t.Fatalf("image is %dx%d, want 640x480", w, h)
			}
		})

		t.Run("exception_is_a_tool_error", func(t *testing.T) {
			res := mcpRun(t, cs, map[string]any{"script": "def main():\n    print('before')\n    return 1 / 0\n"})
			a := wantToolError(t, res, "exception")
			if !strings.Contains(a.Error.Message, "ZeroDivisionError") || !strings.Contains(a.Error.Traceback, "Traceback") || a.Stdout != "before\n" {
				t.Fatalf("error %+v stdout %q", a.Error, a.Stdout)
			}
			if !strings.Contains(res.Content[0].(*mcp.TextContent).Text, "ZeroDivisionError") {
				t.Fatalf("text %q", res.Content[0].(*mcp.TextContent).Text)
			}
		})

		t.Run("limits_apply", func(t *testing.T) {
			start := time.Now()
			wantToolError(t, mcpRun(t, cs, map[string]any{"script": "import time\ndef main():\n    time.sleep(30)\n", "timeout": 1}), "timeout")
			if d := time.Since(start); d > 15*time.Second {
				t.Fatalf("a 1 s timeout answered after %v", d)
			}
			wantToolError(t, mcpRun(t, cs, map[string]any{"script": "def main():\n    b = bytearray(200 << 20)\n    return len(b)\n", "memory_mb": 64}), "memory_limit")
		})

		t.Run("bad_input_is_a_tool_error", func(t *testing.T) {
			for _, args := range []map[string]any{
				{},
				{"script": "def main(): return 1", "bogus": true},
				{"script": "def main(): return 1", "timeout": 99999},
				{"script": "def main(): return 1", "files": []map[string]any{{"name": "../x", "content": "a"}}},
			} {
				wantToolError(t, mcpRun(t, cs, args), "invalid_request")
			}
			wantToolError(t, mcpRun(t, cs, map[string]any{"script": "def main(:"}), "syntax_error")
		})

		t.Run("unknown_tool_is_a_protocol_error", func(t *testing.T) {
			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "run_ruby", Arguments: map[string]any{}})
			if err == nil {
				t.Fatal("calling an unknown tool succeeded")
			}
		})

		// An agent that gives up (its HTTP request ends) cancels the
		// execution, as a client leaving /execute does.
		t.Run("client_gone_cancels", func(t *testing.T) {
			// The last call's sandbox may still be going away (its
			// answer goes out before its teardown): let it, so that the
			// processes seen next are this call's.
			waitNoSandboxProcesses(t)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "run_python", Arguments: map[string]any{"script": "import time\ndef main():\n    time.sleep(25)\n"}})
				errc <- err
			}()
			deadline := time.Now().Add(30 * time.Second)
			for len(supervisortest.SandboxProcesses(t)) == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the execution never started")
				}
				time.Sleep(50 * time.Millisecond)
			}
			cancel()
			if err := <-errc; !errors.Is(err, context.Canceled) {
				t.Fatalf("cancelled call returned %v", err)
			}
			deadline = time.Now().Add(5 * time.Second)
			for len(supervisortest.SandboxProcesses(t)) > 0 {
				if time.Now().After(deadline) {
					t.Fatal("execution still running 5s after the MCP client gave up")
				}
				time.Sleep(50 * time.Millisecond)
			}
			for !strings.Contains(st.Supervisor.Logs.String(), `"exit_reason":"cancelled"`) {
				if time.Now().After(deadline) {
					t.Fatalf("supervisor did not record a cancellation:\n%s", st.Supervisor.Logs)
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	})
}

func keys(m map[string]any) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	slices.Sort(k)
	return k
}
