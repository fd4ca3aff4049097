package wire

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

func TestFeatureSet(t *testing.T) {
	long := strings.Repeat("x", maxFeatureName+1)
	s := NewFeatureSet("stream_events", "", "files", "stream_events", long)
	if got, want := s.Names(), []string{"files", "stream_events"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Names() = %q, want %q", got, want)
	}
	if s.Len() != 2 || !s.Has("files") || s.Has("images") || s.Has("") || s.Has(long) {
		t.Fatalf("set %v: wrong Len/Has", s)
	}
	if got := s.String(); got != "files,stream_events" {
		t.Fatalf("String() = %q", got)
	}
	// Names hands out a copy: the set stays immutable.
	n := s.Names()
	n[0] = "mutated"
	if !s.Has("files") {
		t.Fatal("changing Names() changed the set")
	}

	var empty FeatureSet
	if empty.Names() != nil || empty.Len() != 0 || empty.Has("files") || empty.String() != "" {
		t.Fatalf("zero FeatureSet is not empty: %q", empty.Names())
	}
	if NewFeatureSet().Names() != nil {
		t.Fatal("NewFeatureSet() must give nil names, so a hello omits the key")
	}
}

func TestFeatureSetIntersect(t *testing.T) {
	server := NewFeatureSet("files", "stream_events")
	for _, tc := range []struct {
		name    string
		offered []string
		want    []string
	}{
		{"old client lists nothing", nil, nil},
		{"unknown names are ignored", []string{"teleport", "images"}, nil},
		{"the common part", []string{"teleport", "stream_events", "stream_events"}, []string{"stream_events"}},
		{"all of them", []string{"stream_events", "files"}, []string{"files", "stream_events"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := server.Intersect(tc.offered).Names(); !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("Intersect(%q) = %q, want %q", tc.offered, got, tc.want)
			}
		})
	}
	// A server that offers nothing agrees to nothing.
	if got := (FeatureSet{}).Intersect([]string{"files"}); got.Len() != 0 {
		t.Fatalf("empty set agreed to %v", got)
	}
}

// helloV1 is the hello as builds before features declared it: the decoder of
// an old peer.
type helloV1 struct {
	Version  int    `msgpack:"version"`
	Software string `msgpack:"software"`
}

// TestHelloCompatibility pins the two halves of backward compatibility: a
// hello without features is the base-protocol hello byte for byte (the
// golden hello.bin predates features), and an old peer decodes a hello with
// features, ignoring the key.
func TestHelloCompatibility(t *testing.T) {
	old, err := os.ReadFile(filepath.Join("testdata", "hello.bin"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := NewFrame(0, TypeHello, Hello{Version: 1, Software: "python-executor/0.1", Features: NewFeatureSet().Names()})
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendFrame(nil, f); !bytes.Equal(got, old) {
		t.Fatalf("hello without features = %x, want the base hello %x", got, old)
	}
	var h Hello
	if err := Unmarshal(old[HeaderSize:], &h); err != nil {
		t.Fatal(err)
	}
	if h.Features != nil || NewFeatureSet(h.Features...).Len() != 0 {
		t.Fatalf("base hello decoded with features %q", h.Features)
	}

	body, err := Marshal(Hello{Version: 1, Software: "new", Features: []string{"files", "stream_events"}})
	if err != nil {
		t.Fatal(err)
	}
	var v1 helloV1
	if err := Unmarshal(body, &v1); err != nil {
		t.Fatalf("old peer decoding a hello with features: %v", err)
	}
	if v1 != (helloV1{Version: 1, Software: "new"}) {
		t.Fatalf("old peer decoded %+v", v1)
	}
}

// TestUnknownKeysIgnored checks the rule that lets fields (and features'
// keys) be added without a version bump: every message decodes the same
// with an extra key of any msgpack kind, before, between or after its own.
func TestUnknownKeysIgnored(t *testing.T) {
	extras := map[string]any{
		"future_int":   int64(-5),
		"future_str":   "x",
		"future_bin":   []byte{0, 1, 2},
		"future_nil":   nil,
		"future_bool":  true,
		"future_float": 2.5,
		"future_array": []any{"a", int64(1), []any{}},
		"future_map":   map[string]any{"nested": map[string]any{"deeper": []any{int64(1)}}},
	}
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			body, err := Marshal(tc.body)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := msgpack.Unmarshal(body, &m); err != nil {
				t.Fatal(err)
			}
			for k, v := range extras {
				m[k] = v
			}
			// A map encodes its keys in random order, so the unknown
			// keys land before, between and after the known ones across
			// iterations.
			for i := 0; i < 8; i++ {
				withExtras, err := Marshal(m)
				if err != nil {
					t.Fatal(err)
				}
				dst := reflect.New(reflect.TypeOf(tc.body))
				if err := Unmarshal(withExtras, dst.Interface()); err != nil {
					t.Fatalf("Unmarshal with unknown keys: %v", err)
				}
				if !reflect.DeepEqual(dst.Elem().Interface(), tc.body) {
					t.Fatalf("with unknown keys decoded %+v, want %+v", dst.Elem().Interface(), tc.body)
				}
			}
		})
	}
}
