// Package apispec checks HTTP answers against the gateway's OpenAPI
// document (gateway/openapi.json): the status must be documented for the
// operation, the content type must be one the document lists for that
// status, the documented required headers must be present, and the body must
// validate against the schema (JSON Schema 2020-12, the dialect of OpenAPI
// 3.1). The tests use it on every answer they receive; it is not linked into
// the binaries.
package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/python-executor/python-executor/gateway"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

const docURL = "https://python-executor.invalid/openapi.json"

// Spec is a loaded document with its compiled schemas.
type Spec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler

	mu      sync.Mutex
	schemas map[string]*jsonschema.Schema
}

var (
	loadOnce sync.Once
	loaded   *Spec
	loadErr  error
)

// Load returns the gateway's embedded document, parsed once.
func Load() (*Spec, error) {
	loadOnce.Do(func() { loaded, loadErr = Parse(gateway.OpenAPI()) })
	return loaded, loadErr
}

// Parse loads a document.
func Parse(text []byte) (*Spec, error) {
	var doc map[string]any
	if err := json.Unmarshal(text, &doc); err != nil {
		return nil, fmt.Errorf("openapi document: %w", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		return nil, fmt.Errorf("openapi document: version %q, want 3.1.x", v)
	}
	raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	// contentEncoding is an annotation: base64 content is checked by the
	// tests that decode it.
	if err := c.AddResource(docURL, raw); err != nil {
		return nil, err
	}
	return &Spec{doc: doc, compiler: c, schemas: map[string]*jsonschema.Schema{}}, nil
}

// Doc returns the decoded document.
func (s *Spec) Doc() map[string]any { return s.doc }

// Schema compiles (once) the schema at a JSON pointer of the document.
func (s *Spec) Schema(pointer string) (*jsonschema.Schema, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[pointer]; ok {
		return sch, nil
	}
	sch, err := s.compiler.Compile(docURL + "#" + pointer)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", pointer, err)
	}
	s.schemas[pointer] = sch
	return sch, nil
}

// CompileAll compiles every schema of the document: components.schemas and
// each response content schema. It reports the first that does not compile.
func (s *Spec) CompileAll() error {
	for name := range obj(obj(s.doc["components"])["schemas"]) {
		if _, err := s.Schema("/components/schemas/" + esc(name)); err != nil {
			return err
		}
	}
	for path, item := range obj(s.doc["paths"]) {
		for method, op := range obj(item) {
			for code := range obj(obj(op)["responses"]) {
				ptr := "/paths/" + esc(path) + "/" + method + "/responses/" + code
				resp, rptr := s.resolve(obj(obj(op)["responses"])[code], ptr)
				for mt, media := range obj(resp["content"]) {
					if _, ok := obj(media)["schema"]; ok {
						if _, err := s.Schema(rptr + "/content/" + esc(mt) + "/schema"); err != nil {
							return err
						}
					}
				}
			}
		}
	}
	return nil
}

// Response is one HTTP answer to check.
type Response struct {
	Method string
	Path   string
	Status int
	Header http.Header
	Body   []byte
}

// Check reports how r departs from the document, or nil.
func (s *Spec) Check(r Response) error {
	method := strings.ToLower(r.Method)
	where := fmt.Sprintf("%s %s -> %d", r.Method, r.Path, r.Status)
	var resp map[string]any
	var ptr string
	item, ok := obj(s.doc["paths"])[r.Path].(map[string]any)
	switch {
	case !ok:
		// No such path: the document's 404.
		if r.Status != http.StatusNotFound {
			return fmt.Errorf("%s: undocumented path answered %d, want 404", where, r.Status)
		}
		resp, ptr = obj(obj(s.doc["components"])["responses"])["404"].(map[string]any), "/components/responses/404"
	case item[method] == nil:
		if r.Status != http.StatusMethodNotAllowed {
			return fmt.Errorf("%s: undocumented method answered %d, want 405", where, r.Status)
		}
		resp, ptr = obj(obj(s.doc["components"])["responses"])["405"].(map[string]any), "/components/responses/405"
	default:
		code := strconv.Itoa(r.Status)
		raw, ok := obj(obj(item[method])["responses"])[code]
		if !ok {
			return fmt.Errorf("%s: status not documented for this operation", where)
		}
		resp, ptr = s.resolve(raw, "/paths/"+esc(r.Path)+"/"+method+"/responses/"+code)
	}
	if resp == nil {
		return fmt.Errorf("%s: the document has no response for it", where)
	}
	for name, h := range obj(resp["headers"]) {
		hdr, _ := s.resolve(h, "")
		if req, _ := hdr["required"].(bool); req && r.Header.Get(name) == "" {
			return fmt.Errorf("%s: required header %s missing", where, name)
		}
	}
	content := obj(resp["content"])
	if len(r.Body) == 0 && (method == "head" || len(content) == 0) {
		return nil
	}
	if len(content) == 0 {
		return fmt.Errorf("%s: body %q where the document has none", where, clip(r.Body))
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return fmt.Errorf("%s: content type %q: %v", where, r.Header.Get("Content-Type"), err)
	}
	media, ok := content[mt].(map[string]any)
	if !ok {
		return fmt.Errorf("%s: content type %q not documented", where, mt)
	}
	if _, ok := media["schema"]; !ok {
		return nil
	}
	sch, err := s.Schema(ptr + "/content/" + esc(mt) + "/schema")
	if err != nil {
		return err
	}
	switch mt {
	case "application/json":
		return validateJSON(sch, r.Body, where)
	case "application/x-ndjson":
		for i, line := range bytes.Split(bytes.TrimSuffix(r.Body, []byte("\n")), []byte("\n")) {
			if err := validateJSON(sch, line, fmt.Sprintf("%s line %d", where, i+1)); err != nil {
				return err
			}
		}
		return nil
	case "text/plain":
		return nil
	}
	return fmt.Errorf("%s: no validator for %s", where, mt)
}

func validateJSON(sch *jsonschema.Schema, body []byte, where string) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: body is not JSON: %v: %q", where, err, clip(body))
	}
	if err := sch.Validate(v); err != nil {
		return fmt.Errorf("%s: body %q violates the document: %v", where, clip(body), err)
	}
	return nil
}

// resolve follows a local $ref; it returns the object and its pointer.
func (s *Spec) resolve(v any, ptr string) (map[string]any, string) {
	m := obj(v)
	for i := 0; i < 8; i++ {
		ref, ok := m["$ref"].(string)
		if !ok {
			return m, ptr
		}
		ptr = strings.TrimPrefix(ref, "#")
		var cur any = s.doc
		for _, tok := range strings.Split(strings.TrimPrefix(ptr, "/"), "/") {
			tok = strings.NewReplacer("~1", "/", "~0", "~").Replace(tok)
			cur = obj(cur)[tok]
		}
		m = obj(cur)
	}
	return m, ptr
}

func obj(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

func esc(s string) string { return strings.NewReplacer("~", "~0", "/", "~1").Replace(s) }

func clip(b []byte) string {
	if len(b) > 600 {
		return string(b[:600]) + "..."
	}
	return string(b)
}
