package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/python-executor/python-executor/wire"
	"github.com/valyala/fasthttp"
)

// visibleErrorTypes is every error type an HTTP client can see: the
// gateway's own, the supervisor's it passes through, and internal.
func visibleErrorTypes(t *testing.T) []string {
	_, inGateway := errorTypeConsts(t)
	set := map[string]bool{string(wire.ErrInternal): true}
	for s := range inGateway {
		set[s] = true
	}
	for typ := range defaultMessages {
		set[string(typ)] = true
	}
	var out []string
	for s := range set {
		out = append(out, s)
	}
	sort.Strings(out)
	return out
}

type openAPIDocument struct {
	Paths      map[string]map[string]json.RawMessage `json:"paths"`
	Components struct {
		Schemas map[string]struct {
			Enum       []string `json:"enum"`
			Properties struct {
				Error struct {
					Properties struct {
						Type struct {
							Enum []string `json:"enum"`
						} `json:"type"`
					} `json:"properties"`
				} `json:"error"`
			} `json:"properties"`
		} `json:"schemas"`
		Responses map[string]json.RawMessage `json:"responses"`
	} `json:"components"`
}

func loadOpenAPI(t *testing.T) openAPIDocument {
	t.Helper()
	var doc openAPIDocument
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("gateway/openapi.json: %v", err)
	}
	return doc
}

// The document lists every error type the gateway can answer with, under
// the status statusFor gives it, and nothing else.
func TestOpenAPIListsEveryErrorType(t *testing.T) {
	doc := loadOpenAPI(t)
	visible := visibleErrorTypes(t)
	enum := doc.Components.Schemas["ErrorType"].Enum
	for _, s := range visible {
		if !slices.Contains(enum, s) {
			t.Errorf("ErrorType lacks %s", s)
		}
		code := strconv.Itoa(statusFor(wire.ErrorType(s)))
		perStatus := doc.Components.Schemas["Error"+code].Properties.Error.Properties.Type.Enum
		if !slices.Contains(perStatus, s) {
			t.Errorf("components.schemas.Error%s does not allow %s (the gateway answers it with %s)", code, s, code)
		}
		if _, ok := doc.Components.Responses[code]; !ok {
			t.Errorf("components.responses lacks %s (for %s)", code, s)
		}
	}
	for _, s := range enum {
		if !slices.Contains(visible, s) {
			t.Errorf("ErrorType lists %s, which the gateway never answers with", s)
		}
	}
	for name, sch := range doc.Components.Schemas {
		code, ok := strings.CutPrefix(name, "Error")
		if _, err := strconv.Atoi(code); !ok || err != nil {
			continue
		}
		for _, s := range sch.Properties.Error.Properties.Type.Enum {
			if strconv.Itoa(statusFor(wire.ErrorType(s))) != code {
				t.Errorf("%s allows %s, which the gateway answers with %d", name, s, statusFor(wire.ErrorType(s)))
			}
		}
	}
}

// Every operation documents the statuses the gateway can give it: the
// connection-level refusals on every request, and on POST /execute every
// status an error type maps to.
func TestOpenAPIListsEveryStatus(t *testing.T) {
	doc := loadOpenAPI(t)
	statuses := func(path, method string) map[string]bool {
		var op struct {
			Responses map[string]json.RawMessage `json:"responses"`
		}
		if err := json.Unmarshal(doc.Paths[path][method], &op); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		set := map[string]bool{}
		for c := range op.Responses {
			set[c] = true
		}
		return set
	}
	conn := []int{fasthttp.StatusRequestTimeout, fasthttp.StatusRequestEntityTooLarge,
		fasthttp.StatusTooManyRequests, fasthttp.StatusRequestHeaderFieldsTooLarge}
	for path, item := range doc.Paths {
		for method := range item {
			got := statuses(path, method)
			for _, c := range conn {
				if !got[strconv.Itoa(c)] {
					t.Errorf("%s %s does not document %d", method, path, c)
				}
			}
		}
	}
	exec := statuses("/execute", "post")
	want := []string{"200"}
	for _, s := range visibleErrorTypes(t) {
		switch wire.ErrorType(s) {
		case errNotFound, errMethodNotAllowed:
			// Not answers to an operation: components.responses.
			continue
		}
		want = append(want, strconv.Itoa(statusFor(wire.ErrorType(s))))
	}
	for _, c := range want {
		if !exec[c] {
			t.Errorf("POST /execute does not document %s", c)
		}
	}
	for _, p := range []string{"/health", "/openapi.json", "/execute", "/"} {
		if !statuses(p, "options")["204"] {
			t.Errorf("OPTIONS %s does not document 204", p)
		}
	}
	for _, c := range []string{"200", "503"} {
		if !statuses("/health", "get")[c] {
			t.Errorf("GET /health does not document %s", c)
		}
	}
	// The router's routes are the document's operations.
	for _, route := range []struct{ method, path string }{
		{"post", "/execute"}, {"get", "/health"}, {"head", "/health"},
		{"get", "/openapi.json"}, {"head", "/openapi.json"},
		{"get", "/"}, {"head", "/"},
	} {
		if doc.Paths[route.path][route.method] == nil {
			t.Errorf("the document lacks %s %s", route.method, route.path)
		}
	}
}

// GET /openapi.json serves the file in the repository, byte for byte.
func TestServesOpenAPI(t *testing.T) {
	file, err := os.ReadFile("openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	ts := start(t, &fakeExec{})
	resp, err := http.Get(ts.url + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || string(body) != string(file) {
		t.Fatalf("GET /openapi.json: %d %q, %d bytes; want 200 application/json with gateway/openapi.json", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
}
