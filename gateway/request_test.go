package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/wire"
)

func TestMalformedRequests(t *testing.T) {
	f := &fakeExec{}
	ts := start(t, f)
	tests := []struct {
		name, contentType, body string
		message                 string // the exact error message
	}{
		{"no content type", "", `{"script":"x"}`, "Content-Type must be application/json"},
		{"form content type", "application/x-www-form-urlencoded", `{"script":"x"}`, "Content-Type must be application/json"},
		{"text content type", "text/plain", `{"script":"x"}`, "Content-Type must be application/json"},
		{"json suffix type", "application/problem+json", `{"script":"x"}`, "Content-Type must be application/json"},
		{"broken content type", "application/json; charset", `{"script":"x"}`, "Content-Type must be application/json"},
		{"latin1 charset", "application/json; charset=latin1", `{"script":"x"}`, "Content-Type charset must be utf-8"},
		{"empty body", "application/json", ``, "request body is not valid JSON: unexpected end of input"},
		{"not JSON", "application/json", `script=x`, "request body is not valid JSON: invalid character 's' looking for beginning of value"},
		{"JSON array", "application/json", `[{"script":"x"}]`, "request body must be a JSON object"},
		{"JSON string", "application/json", `"def main(): pass"`, "request body must be a JSON object"},
		{"JSON null", "application/json", `null`, "request body must be a JSON object"},
		{"truncated", "application/json", `{"script":"x"`, "request body is not valid JSON: unexpected end of input"},
		{"trailing garbage", "application/json", `{"script":"x"} garbage`, "request body has data after the JSON object"},
		{"second object", "application/json", `{"script":"x"}{"script":"y"}`, "request body has data after the JSON object"},
		{"duplicate key", "application/json", `{"script":"x","script":"y"}`, `duplicate field "script"`},
		{"missing script", "application/json", `{}`, `field "script" is required`},
		{"empty script", "application/json", `{"script":""}`, `field "script" must not be empty`},
		{"null script", "application/json", `{"script":null}`, `field "script" must be a string`},
		{"number script", "application/json", `{"script":42}`, `field "script" must be a string`},
		{"object script", "application/json", `{"script":{"code":"x"}}`, `field "script" must be a string`},
		{"unknown field", "application/json", `{"script":"x","scirpt":"y"}`, `unknown field "scirpt"`},
		{"long unknown field is cut", "application/json", `{"script":"x","` + strings.Repeat("k", 100) + `":1}`,
			`unknown field "` + strings.Repeat("k", 64) + `"...`},
		{"raw control char in string", "application/json", "{\"script\":\"a\x01b\"}",
			"request body is not valid JSON: invalid character '\\x01' in string literal"},
		{"raw newline outside any string is fine but bad token", "application/json", "{\n\"script\":\"x\",\n}",
			"request body is not valid JSON: invalid character '}' looking for beginning of object key string"},
		{"timeout as string", "application/json", `{"script":"x","timeout":"5"}`, `field "timeout" must be a number of seconds`},
		{"timeout zero", "application/json", `{"script":"x","timeout":0}`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"timeout negative", "application/json", `{"script":"x","timeout":-1}`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"timeout over maximum", "application/json", `{"script":"x","timeout":30.5}`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"timeout overflow", "application/json", `{"script":"x","timeout":1e400}`, `field "timeout" must be greater than 0 and at most 30 seconds`},
		{"timeout bool", "application/json", `{"script":"x","timeout":true}`, `field "timeout" must be a number of seconds`},
		{"cpu_seconds over bound", "application/json", `{"script":"x","cpu_seconds":86401}`, `field "cpu_seconds" must be greater than 0 and at most 86400 seconds`},
		{"memory_mb fraction", "application/json", `{"script":"x","memory_mb":1.5}`, `field "memory_mb" must be an integer`},
		{"memory_mb exponent", "application/json", `{"script":"x","memory_mb":2e2}`, `field "memory_mb" must be an integer`},
		{"memory_mb string", "application/json", `{"script":"x","memory_mb":"256"}`, `field "memory_mb" must be an integer`},
		{"memory_mb zero", "application/json", `{"script":"x","memory_mb":0}`, `field "memory_mb" must be between 1 and 1048576`},
		{"memory_mb huge", "application/json", `{"script":"x","memory_mb":99999999999999999999}`, `field "memory_mb" must be between 1 and 1048576`},
		{"pids negative", "application/json", `{"script":"x","pids":-3}`, `field "pids" must be between 1 and 4194304`},
		{"pids array", "application/json", `{"script":"x","pids":[1]}`, `field "pids" must be an integer`},
		{"open_files zero", "application/json", `{"script":"x","open_files":0}`, `field "open_files" must be between 1 and 1048576`},
		{"file_size_mb bool", "application/json", `{"script":"x","file_size_mb":false}`, `field "file_size_mb" must be an integer`},
		{"tmp_mb over bound", "application/json", `{"script":"x","tmp_mb":1048577}`, `field "tmp_mb" must be between 1 and 1048576`},
		{"output_bytes object", "application/json", `{"script":"x","output_bytes":{}}`, `field "output_bytes" must be an integer`},
		{"result_bytes zero", "application/json", `{"script":"x","result_bytes":0}`, `field "result_bytes" must be between 1 and 1099511627776`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.calls()
			r := do(t, "POST", ts.url+"/execute", tt.contentType, tt.body, nil)
			e := checkError(t, r, 400, "invalid_request")
			if e.Error.Message != tt.message {
				t.Errorf("message = %q\nwant      %q", e.Error.Message, tt.message)
			}
			if e.Error.Traceback != nil || *e.Stdout != "" || *e.Stderr != "" {
				t.Errorf("unexpected traceback/stdout/stderr: %s", r.body)
			}
			if f.calls() != before {
				t.Error("an invalid request reached the executor")
			}
		})
	}
}

func TestOptionalFields(t *testing.T) {
	f := &fakeExec{}
	ts := start(t, f)
	tests := []struct {
		name, body string
		want       wire.Limits
	}{
		{"none", `{"script":"x"}`, wire.Limits{}},
		{"nulls are absent", `{"script":"x","timeout":null,"memory_mb":null}`, wire.Limits{}},
		{"timeout seconds", `{"script":"x","timeout":2.5}`, wire.Limits{TimeoutMS: 2500}},
		{"timeout integer", `{"script":"x","timeout":30}`, wire.Limits{TimeoutMS: 30000}},
		{"tiny timeout rounds up", `{"script":"x","timeout":0.0001}`, wire.Limits{TimeoutMS: 1}},
		{"timeout exponent", `{"script":"x","timeout":1.5e1}`, wire.Limits{TimeoutMS: 15000}},
		{"all", `{"script":"x","timeout":1,"cpu_seconds":0.5,"memory_mb":256,"pids":16,"open_files":32,` +
			`"file_size_mb":8,"tmp_mb":16,"output_bytes":4096,"result_bytes":1024}`,
			wire.Limits{TimeoutMS: 1000, CPUMS: 500, MemoryBytes: 256 << 20, Pids: 16, OpenFiles: 32,
				FileSizeBytes: 8 << 20, TmpBytes: 16 << 20, OutputBytes: 4096, ResultBytes: 1024}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := postJSON(t, ts, tt.body)
			if r.status != 200 {
				t.Fatalf("status = %d: %s", r.status, r.body)
			}
			if got := f.lastReq(t).Limits; got != tt.want {
				t.Errorf("Limits = %+v\nwant     %+v", got, tt.want)
			}
		})
	}
	t.Run("charset utf-8 accepted", func(t *testing.T) {
		r := do(t, "POST", ts.url+"/execute", "application/json; charset=UTF-8", `{"script":"x"}`, nil)
		if r.status != 200 {
			t.Errorf("status = %d: %s", r.status, r.body)
		}
	})
	t.Run("lower max timeout", func(t *testing.T) {
		ts := start(t, f, func(c *Config) { c.MaxTimeout = 5 * time.Second })
		e := checkError(t, postJSON(t, ts, `{"script":"x","timeout":6}`), 400, "invalid_request")
		if want := `field "timeout" must be greater than 0 and at most 5 seconds`; e.Error.Message != want {
			t.Errorf("message = %q, want %q", e.Error.Message, want)
		}
	})
}

func TestEscapeRawControls(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"a":"b"}`, `{"a":"b"}`},
		{"{\n\t\"a\" :\r\n \"b\"\n}", "{\n\t\"a\" :\r\n \"b\"\n}"},
		{"{\"a\":\"x\ny\"}", `{"a":"x\ny"}`},
		{"{\"a\":\"\r\n\t\"}", `{"a":"\r\n\t"}`},
		{"{\"a\":\"q\\\"\n\"}", `{"a":"q\"\n"}`},
		{"{\"a\":\"\\\\\"\n}", "{\"a\":\"\\\\\"\n}"},
		{"{\"a\":\"\x01\"}", "{\"a\":\"\x01\"}"},
		{"\"unterminated\n", `"unterminated\n`},
	}
	for _, tt := range tests {
		if got := string(escapeRawControls([]byte(tt.in))); got != tt.want {
			t.Errorf("escapeRawControls(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCheckContentType(t *testing.T) {
	tests := []struct {
		ct string
		ok bool
	}{
		{"application/json", true},
		{"Application/JSON", true},
		{"application/json; charset=utf-8", true},
		{"application/json;charset=\"UTF-8\"", true},
		{"application/json; charset=utf8", true},
		{"application/json; boundary=x", true},
		{"application/json; charset=utf-16", false},
		{"application/jsonx", false},
		{"", false},
		{"json", false},
	}
	for _, tt := range tests {
		if got := checkContentType(tt.ct) == nil; got != tt.ok {
			t.Errorf("checkContentType(%q) ok = %v, want %v", tt.ct, got, tt.ok)
		}
	}
}

func FuzzParseExecute(f *testing.F) {
	seeds := []string{
		`{"script":"def main(): return 1"}`,
		"{\n \"script\": \"\nimport numpy\n\"\n}",
		`{"script":"x","timeout":2.5,"memory_mb":256}`,
		`{"script":"x","script":"y"}`,
		`{"script":"x"} {}`,
		`[1]`, `{`, `"x"`, ``,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, e := parseExecute(body, 30*time.Second, DefaultMaxBodyBytes)
		if e != nil {
			if e.Type != wire.ErrInvalidRequest || e.Message == "" {
				t.Fatalf("parseExecute(%q) error %+v", body, e)
			}
			return
		}
		if req.Script == "" {
			t.Fatalf("parseExecute(%q) accepted an empty script", body)
		}
		if l := req.Limits; l.TimeoutMS < 0 || l.TimeoutMS > 30000 || l.MemoryBytes < 0 || l.Pids < 0 || l.CPUMS < 0 {
			t.Fatalf("parseExecute(%q) limits out of range: %+v", body, l)
		}
	})
}
