package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// fuzzLimit is the frame limit FuzzReadFrame reads with: small, so that the
// oversize path is reached.
const fuzzLimit = 4 << 10

// goldenFrames returns the golden frame files of testdata/.
func goldenFrames(f *testing.F) [][]byte {
	paths, err := filepath.Glob(filepath.Join("testdata", "*.bin"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("glob golden frames: %v (%d files)", err, len(paths))
	}
	var out [][]byte
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// FuzzReadFrame checks ReadFrame against an independent reading of the
// header: the error it must return is known from the input's length alone,
// and a frame it returns re-encodes to exactly the bytes it consumed. Frames
// of a known type have their body decoded too.
func FuzzReadFrame(f *testing.F) {
	for _, tc := range readFrameCases {
		if len(tc.in) <= 2*fuzzLimit {
			f.Add(tc.in)
		}
	}
	for _, b := range goldenFrames(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		got, err := ReadFrame(bytes.NewReader(in), fuzzLimit)
		var want error
		switch {
		case len(in) == 0:
			want = io.EOF
		case len(in) < HeaderSize:
			want = io.ErrUnexpectedEOF
		case binary.BigEndian.Uint32(in) > fuzzLimit:
			want = ErrFrameTooLarge
		case len(in)-HeaderSize < int(binary.BigEndian.Uint32(in)):
			want = io.ErrUnexpectedEOF
		}
		if want != nil {
			if !errors.Is(err, want) {
				t.Fatalf("ReadFrame(%x) = %v, want %v", short(in), err, want)
			}
			return
		}
		if err != nil {
			t.Fatalf("ReadFrame(%x) = %v, want a frame", short(in), err)
		}
		if enc := AppendFrame(nil, got); !bytes.Equal(enc, in[:len(enc)]) {
			t.Fatalf("AppendFrame(ReadFrame(%x)) = %x, want the bytes read", short(in), short(enc))
		}
		for _, k := range kindsOf(got.Type) {
			checkUnmarshal(t, k, got.Body)
		}
	})
}

// FuzzUnmarshal decodes arbitrary bodies into every message type.
func FuzzUnmarshal(f *testing.F) {
	for _, tc := range goldenCases {
		f.Add(uint8(kindsOf(tc.typ)[0]), mustMarshal(f, tc.body))
	}
	f.Add(uint8(2), mustMarshal(f, RunnerRequest{Script: "x", MaxResultBytes: 1}))
	for _, tc := range hostileBodies {
		if len(tc.body) <= 1<<10 {
			f.Add(uint8(tc.kind), tc.body)
		}
	}
	f.Fuzz(func(t *testing.T, kind uint8, body []byte) {
		checkUnmarshal(t, int(kind)%len(messageKinds), body)
	})
}

func mustMarshal(f *testing.F, v any) []byte {
	b, err := Marshal(v)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

// checkUnmarshal decodes body as message kind k: the only error allowed is a
// *ProtocolError, and a body that decodes has a canonical encoding that
// decodes to the same message and re-encodes to identical bytes.
func checkUnmarshal(t *testing.T, k int, body []byte) {
	t.Helper()
	kind := messageKinds[k]
	v := kind.new()
	err := Unmarshal(body, v)
	if err != nil {
		var pe *ProtocolError
		if !errors.As(err, &pe) {
			t.Fatalf("Unmarshal(%x) into %s = %v (%T), want nil or a *ProtocolError", short(body), kind.name, err, err)
		}
		return
	}
	enc, err := Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(Unmarshal(%x) into %s) = %v, want nil", short(body), kind.name, err)
	}
	back := kind.new()
	if err := Unmarshal(enc, back); err != nil {
		t.Fatalf("Unmarshal(%x) into %s = %v, want nil (re-encoding of %x)", short(enc), kind.name, err, short(body))
	}
	if !reflect.DeepEqual(back, v) {
		t.Fatalf("Unmarshal(%x) into %s = %+v, want %+v", short(enc), kind.name, back, v)
	}
	again, err := Marshal(back)
	if err != nil || !bytes.Equal(again, enc) {
		t.Fatalf("Marshal(%+v) = %x, %v, want %x", back, short(again), err, short(enc))
	}
}
