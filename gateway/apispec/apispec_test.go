package apispec

import (
	"net/http"
	"strings"
	"testing"
)

func TestDocumentCompiles(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.CompileAll(); err != nil {
		t.Fatal(err)
	}
}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// The checker accepts the documented answers and refuses each kind of
// departure, so a test that uses it can fail.
func TestCheck(t *testing.T) {
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	json := hdr("Content-Type", "application/json", "X-Request-Id", "abc")
	ndjson := hdr("Content-Type", "application/x-ndjson", "X-Request-Id", "abc")
	busy := hdr("Content-Type", "application/json", "X-Request-Id", "abc", "Retry-After", "1")
	ok := []Response{
		{"POST", "/execute", 200, json, []byte(`{"result":{"a":[1,2]},"stdout":"","stderr":"","stats":{"wall_ms":3,"cpu_ms":2,"peak_memory_bytes":100},"truncated":{"stdout":false,"stderr":false}}`)},
		{"POST", "/execute", 200, json, []byte(`{"result":null,"stdout":"x","stderr":"","stats":{"wall_ms":3,"cpu_ms":2,"peak_memory_bytes":100,"queue_ms":4},"truncated":{"stdout":true,"stderr":false,"files":false},"files":[{"name":"a.csv","size":1,"media_type":"text/csv","content":"YQ=="}],"images":[{"media_type":"image/png","data":"iVBO"}]}`)},
		{"POST", "/execute", 400, json, []byte(`{"error":{"type":"syntax_error","message":"m"},"stdout":"","stderr":""}`)},
		{"POST", "/execute", 500, json, []byte(`{"error":{"type":"exception","message":"m","traceback":"t"},"stdout":"a","stderr":"b"}`)},
		{"POST", "/execute", 503, busy, []byte(`{"error":{"type":"busy","message":"m"},"stdout":"","stderr":""}`)},
		{"GET", "/health", 200, json, []byte(`{"status":"healthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v1","tier":"full","protections":["pid_namespace"],"missing":[]}`)},
		{"GET", "/health", 200, json, []byte(`{"status":"healthy","supervisor":"reachable","engine":"cold","isolation":"full","cgroups":"v2"}`)},
		{"GET", "/health", 503, json, []byte(`{"status":"unhealthy","supervisor":"unreachable"}`)},
		{"GET", "/health", 503, busy, []byte(`{"status":"unhealthy","reason":"shutting down"}`)},
		{"GET", "/health", 503, busy, []byte(`{"status":"unhealthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v1","reason":"no zygote"}`)},
		{"HEAD", "/health", 200, json, nil},
		{"GET", "/nope", 404, json, []byte(`{"error":{"type":"not_found","message":"m"},"stdout":"","stderr":""}`)},
		{"GET", "/execute", 405, hdr("Content-Type", "application/json", "X-Request-Id", "a", "Allow", "POST"), []byte(`{"error":{"type":"method_not_allowed","message":"m"},"stdout":"","stderr":""}`)},
		{"OPTIONS", "/execute", 204, hdr("X-Request-Id", "a", "Allow", "POST, OPTIONS"), nil},
		{"POST", "/execute", 200, ndjson, []byte(`{"event":"stdout","data":"a\n"}`)},
		{"POST", "/execute", 200, ndjson, []byte(`{"event":"done","status":200,"response":{"result":1,"stdout":"a\n","stderr":"","stats":{"wall_ms":3,"cpu_ms":2,"peak_memory_bytes":100},"truncated":{"stdout":false,"stderr":false,"images":true}}}`)},
		{"POST", "/execute", 200, ndjson, []byte(`{"event":"done","status":500,"response":{"error":{"type":"exception","message":"m","traceback":"t"},"stdout":"a","stderr":""}}`)},
	}
	for _, r := range ok {
		if err := s.Check(r); err != nil {
			t.Errorf("%s", err)
		}
	}
	bad := []struct {
		r    Response
		want string
	}{
		{Response{"POST", "/execute", 418, json, []byte(`{}`)}, "not documented"},
		{Response{"POST", "/execute", 200, hdr("Content-Type", "text/html", "X-Request-Id", "a"), []byte(`{}`)}, "content type"},
		{Response{"POST", "/execute", 200, hdr("Content-Type", "application/json"), []byte(`{}`)}, "X-Request-Id"},
		{Response{"POST", "/execute", 200, json, []byte(`{"result":1,"stdout":"","stderr":"","stats":{"wall_ms":3,"cpu_ms":2,"peak_memory_bytes":100},"truncated":{"stdout":false,"stderr":false},"extra":1}`)}, "violates"},
		{Response{"POST", "/execute", 200, json, []byte(`{"result":1,"stdout":"","stderr":""}`)}, "violates"},
		{Response{"POST", "/execute", 500, json, []byte(`{"error":{"type":"busy","message":"m"},"stdout":"","stderr":""}`)}, "violates"},
		{Response{"POST", "/execute", 400, json, []byte(`{"error":{"type":"no_such_type","message":"m"},"stdout":"","stderr":""}`)}, "violates"},
		{Response{"POST", "/execute", 503, json, []byte(`{"error":{"type":"busy","message":"m"},"stdout":"","stderr":""}`)}, "Retry-After"},
		{Response{"GET", "/health", 200, json, []byte(`{"status":"unhealthy","supervisor":"unreachable"}`)}, "violates"},
		{Response{"GET", "/health", 200, json, []byte(`{"status":"healthy","supervisor":"reachable","engine":"warm","isolation":"full","cgroups":"v1","tier":"full"}`)}, "violates"},
		{Response{"GET", "/nope", 200, json, []byte(`{}`)}, "want 404"},
		{Response{"POST", "/execute", 200, json, []byte(`not json`)}, "not JSON"},
		{Response{"POST", "/execute", 200, ndjson, []byte(`{"event":"stdout","data":1}`)}, "violates"},
		{Response{"POST", "/execute", 200, ndjson, []byte(`{"event":"done","status":200,"response":{"result":1,"stdout":""}}`)}, "violates"},
		{Response{"POST", "/execute", 200, ndjson, []byte(`{"event":"done","response":{"error":{"type":"exception","message":"m"},"stdout":"","stderr":""}}`)}, "violates"},
	}
	for _, b := range bad {
		err := s.Check(b.r)
		if err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("Check(%d %s) = %v, want an error about %q", b.r.Status, b.r.Body, err, b.want)
		}
	}
}
