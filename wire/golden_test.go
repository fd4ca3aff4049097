package wire

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// goldenCases are the frames whose exact bytes are fixed in testdata/. The
// Python runner's tests (runner/tests/test_golden.py) check the same files, so
// both implementations agree byte for byte.
var goldenCases = []struct {
	name string
	id   uint32
	typ  Type
	body any
}{
	{"hello", 0, TypeHello, Hello{Version: 1, Software: "python-executor/0.1"}},
	// A client's hello listing optional features, and a supervisor's answer
	// agreeing to part of them. The names are examples: the negotiation
	// does not depend on which features exist.
	{"hello_features", 0, TypeHello, Hello{Version: 1, Software: "python-executor-client", Features: []string{"example_a", "example_b"}}},
	{"hello_features_answer", 0, TypeHello, Hello{Version: 1, Software: "python-executor/0.1", Features: []string{"example_b"}}},
	{"execute", 7, TypeExecute, Execute{Script: "def main():\n    return {\"hello\": \"world\"}\n", TraceID: "req-1", Limits: Limits{TimeoutMS: 5000, MemoryBytes: 256 << 20}}},
	{"cancel", 7, TypeCancel, Empty{}},
	{"status_request", 0, TypeStatusRequest, Empty{}},
	{"runner_request", 1, TypeExecute, RunnerRequest{Script: "def main():\n    return [1, 2.5, None]\n", MaxResultBytes: 8 << 20}},
	{"stdout", 7, TypeStdout, Chunk{Data: []byte("hello\n")}},
	{"stderr", 7, TypeStderr, Chunk{Data: []byte{0xff, 'x', '\n'}}},
	{"result", 1, TypeResult, Result{JSON: []byte(`{"hello":"world","n":[1,2.5,null]}`)}},
	{"error", 1, TypeError, Error{Type: ErrInvalidResult, Message: "main() returned a value that is not JSON-serializable: $.items[3]: set", Traceback: ""}},
	{"done", 7, TypeDone, Done{WallMS: 31, CPUMS: 25, PeakMemoryBytes: 9 << 20, ExitReason: ExitOK, ExitCode: 0}},
	{"status", 0, TypeStatus, Status{Software: "python-executor/0.1", Engine: "cold", Isolation: "full", Cgroups: "v1", Running: 1, Queued: 0, Slots: 2, QueueSize: 64}},
	// Feature metrics: a request and its answer.
	{"metrics_request", 0, TypeMetricsRequest, Empty{}},
	{"metrics", 0, TypeMetrics, Metrics{Format: MetricsFormat, Text: []byte("# HELP pyexec_supervisor_running Executions running now.\n# TYPE pyexec_supervisor_running gauge\npyexec_supervisor_running 1\n")}},
}

type manifestEntry struct {
	Name      string     `json:"name"`
	File      string     `json:"file"`
	RequestID uint32     `json:"request_id"`
	Type      uint8      `json:"type"`
	Version   uint8      `json:"version"`
	Body      orderedMap `json:"body"`
}

// orderedMap is a msgpack map decoded with its keys in wire order, so the
// JSON manifest lists them in the order an encoder must write them.
type orderedMap struct {
	keys []string
	vals []any
}

func (m orderedMap) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, k := range m.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		vb, err := json.Marshal(m.vals[i])
		if err != nil {
			return nil, err
		}
		b.Write(kb)
		b.WriteByte(':')
		b.Write(vb)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// decodeOrdered decodes one msgpack value, keeping map key order and writing
// byte strings as {"$bytes": base64} so the manifest keeps the bin/str
// distinction.
func decodeOrdered(d *msgpack.Decoder) (any, error) {
	c, err := d.PeekCode()
	if err != nil {
		return nil, err
	}
	switch {
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := d.DecodeMapLen()
		if err != nil {
			return nil, err
		}
		var m orderedMap
		for i := 0; i < n; i++ {
			k, err := d.DecodeString()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(d)
			if err != nil {
				return nil, err
			}
			m.keys = append(m.keys, k)
			m.vals = append(m.vals, v)
		}
		return m, nil
	case msgpcode.IsBin(c):
		b, err := d.DecodeBytes()
		if err != nil {
			return nil, err
		}
		return map[string]string{"$bytes": base64.StdEncoding.EncodeToString(b)}, nil
	default:
		return d.DecodeInterface()
	}
}

func TestGolden(t *testing.T) {
	var manifest []manifestEntry
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			f, err := NewFrame(tc.id, tc.typ, tc.body)
			if err != nil {
				t.Fatalf("NewFrame: %v", err)
			}
			got := AppendFrame(nil, f)
			path := filepath.Join("testdata", tc.name+".bin")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden (run with -update): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("encode %s = %x, want %x", tc.name, got, want)
			}
			back, err := ReadFrame(bytes.NewReader(want), DefaultMaxFrame)
			if err != nil {
				t.Fatalf("ReadFrame(%x) = %v", want, err)
			}
			if back.RequestID != tc.id || back.Type != tc.typ || back.Version != Version {
				t.Fatalf("ReadFrame header = %d/%s/%d, want %d/%s/%d", back.RequestID, back.Type, back.Version, tc.id, tc.typ, Version)
			}
			dst := reflect.New(reflect.TypeOf(tc.body))
			if err := Unmarshal(back.Body, dst.Interface()); err != nil {
				t.Fatalf("Unmarshal: %v", err)
			}
			if !reflect.DeepEqual(dst.Elem().Interface(), tc.body) {
				t.Fatalf("Unmarshal = %+v, want %+v", dst.Elem().Interface(), tc.body)
			}
			body, err := decodeOrdered(msgpack.NewDecoder(bytes.NewReader(back.Body)))
			if err != nil {
				t.Fatalf("decode body: %v", err)
			}
			manifest = append(manifest, manifestEntry{Name: tc.name, File: tc.name + ".bin", RequestID: tc.id, Type: uint8(tc.typ), Version: Version, Body: body.(orderedMap)})
		})
	}
	data, err := json.MarshalIndent(manifest, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	data = append(data, '\n')
	path := filepath.Join("testdata", "golden.json")
	if *update {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read manifest: %v", err)
	}
	if !bytes.Equal(data, want) {
		t.Fatalf("manifest differs from %s; run go test -update and review", path)
	}
}
