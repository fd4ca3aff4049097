package wire

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// messageKinds are the body types of the protocol, one constructor each;
// FuzzUnmarshal picks one by index.
var messageKinds = []struct {
	name string
	new  func() any
}{
	{"hello", func() any { return new(Hello) }},
	{"execute", func() any { return new(Execute) }},
	{"runner_request", func() any { return new(RunnerRequest) }},
	{"empty", func() any { return new(Empty) }},
	{"chunk", func() any { return new(Chunk) }},
	{"result", func() any { return new(Result) }},
	{"error", func() any { return new(Error) }},
	{"done", func() any { return new(Done) }},
	{"status", func() any { return new(Status) }},
	{"metrics", func() any { return new(Metrics) }},
}

// kindsOf returns the indexes in messageKinds of the bodies frame type t may
// carry.
func kindsOf(t Type) []int {
	switch t {
	case TypeHello:
		return []int{0}
	case TypeExecute:
		return []int{1, 2}
	case TypeCancel, TypeStatusRequest, TypeMetricsRequest:
		return []int{3}
	case TypeStdout, TypeStderr:
		return []int{4}
	case TypeResult:
		return []int{5}
	case TypeError:
		return []int{6}
	case TypeDone:
		return []int{7}
	case TypeStatus:
		return []int{8}
	case TypeMetrics:
		return []int{9}
	}
	return nil
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// nested returns a body of depth maps, each {"x": <next>}, ending in 1.
func nested(depth int) []byte {
	return append(bytes.Repeat([]byte{0x81, 0xa1, 'x'}, depth), 0x01)
}

// hostileBodies are bodies a peer may send to make a decoder panic, allocate
// from a declared length, or recurse without bound. Every one is refused.
var hostileBodies = []struct {
	name string
	kind int // index in messageKinds
	body []byte
}{
	{"bin32 of 4 GiB in a 20-byte body", 4, cat([]byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xc6, 0xff, 0xff, 0xff, 0xff}, make([]byte, 9))},
	{"str32 of 4 GiB", 1, cat([]byte{0x81, 0xa6, 's', 'c', 'r', 'i', 'p', 't', 0xdb, 0xff, 0xff, 0xff, 0xff}, make([]byte, 7))},
	{"str16 past the end", 0, []byte{0x81, 0xa8, 's', 'o', 'f', 't', 'w', 'a', 'r', 'e', 0xda, 0x01, 0x00, 'x'}},
	{"array32 of 2^32-1 under an unknown key", 4, cat([]byte{0x81, 0xa1, 'x', 0xdd, 0xff, 0xff, 0xff, 0xff}, make([]byte, 12))},
	{"array32 of 2^32-1 as the data", 4, cat([]byte{0x81, 0xa4, 'd', 'a', 't', 'a', 0xdd, 0xff, 0xff, 0xff, 0xff}, make([]byte, 9))},
	{"map32 of 2^32-1 at the top", 8, cat([]byte{0xdf, 0xff, 0xff, 0xff, 0xff}, make([]byte, 15))},
	{"map32 of 2^32-1 as limits", 1, cat([]byte{0x81, 0xa6, 'l', 'i', 'm', 'i', 't', 's', 0xdf, 0xff, 0xff, 0xff, 0xff}, make([]byte, 7))},
	{"ext32 of 4 GiB under an unknown key", 4, cat([]byte{0x81, 0xa1, 'x', 0xc9, 0xff, 0xff, 0xff, 0xff, 0x01}, make([]byte, 11))},
	{"fixext16 past the end", 4, []byte{0x81, 0xa1, 'x', 0xd8, 0x01, 0x00}},
	{"array at the top", 4, cat([]byte{0xdd, 0xff, 0xff, 0xff, 0xff}, make([]byte, 15))},
	{"string at the top", 4, []byte{0xa1, 'x'}},
	{"nil at the top", 3, []byte{0xc0}},
	{"empty body", 3, []byte{}},
	{"never-used code 0xc1", 4, []byte{0x81, 0xa1, 'x', 0xc1}},
	{"truncated map", 6, []byte{0x83, 0xa4, 't', 'y', 'p', 'e', 0xa1, 'x'}},
	{"truncated uint64", 7, []byte{0x81, 0xa7, 'w', 'a', 'l', 'l', '_', 'm', 's', 0xcf, 0x00}},
	{"trailing bytes", 3, []byte{0x80, 0x80}},
	{"nesting 33 deep", 4, nested(33)},
	{"nesting 5 million deep", 4, nested(5 << 20)},
	{"array nesting 16 MiB deep", 4, cat([]byte{0x81, 0xa1, 'x'}, bytes.Repeat([]byte{0x91}, 16<<20), []byte{0x01})},
}

func TestUnmarshalHostile(t *testing.T) {
	for _, tc := range hostileBodies {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			n := bytesAllocated(1, func() { err = Unmarshal(tc.body, messageKinds[tc.kind].new()) })
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Unmarshal(%x) into %s = %v, want a *ProtocolError", short(tc.body), messageKinds[tc.kind].name, err)
			}
			if limit := uint64(64<<10 + 2*len(tc.body)); n > limit {
				t.Fatalf("Unmarshal(%x) into %s allocated %d bytes, want at most %d", short(tc.body), messageKinds[tc.kind].name, n, limit)
			}
		})
	}
}

func TestUnmarshalAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		body []byte
		into any
		want any
	}{
		{"empty map", []byte{0x80}, new(Empty), &Empty{}},
		{"unknown keys are skipped", cat([]byte{0x82, 0xa1, 'x'}, []byte{0x92, 0x81, 0xa1, 'y', 0xc0, 0xd4, 0x01, 0x02}, []byte{0xa4, 'd', 'a', 't', 'a', 0xc4, 0x01, 'z'}), new(Chunk), &Chunk{Data: []byte("z")}},
		{"nesting 32 deep", nested(32), new(Chunk), &Chunk{}},
		{"str where bin is expected", []byte{0x81, 0xa4, 'j', 's', 'o', 'n', 0xa2, '[', ']'}, new(Result), &Result{JSON: []byte("[]")}},
		{"missing keys are zero", []byte{0x81, 0xa4, 't', 'y', 'p', 'e', 0xa4, 'b', 'u', 's', 'y'}, new(Error), &Error{Type: ErrBusy}},
		{"map16 and uint16", []byte{0xde, 0x00, 0x01, 0xa7, 'v', 'e', 'r', 's', 'i', 'o', 'n', 0xcd, 0x01, 0x00}, new(Hello), &Hello{Version: 256}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := Unmarshal(tc.body, tc.into); err != nil {
				t.Fatalf("Unmarshal(%x) = %v, want nil", short(tc.body), err)
			}
			if !reflect.DeepEqual(tc.into, tc.want) {
				t.Fatalf("Unmarshal(%x) = %+v, want %+v", short(tc.body), tc.into, tc.want)
			}
		})
	}
}
