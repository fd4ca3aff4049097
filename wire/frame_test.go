package wire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"testing"
)

// header returns a frame header announcing n body bytes.
func header(n uint32, id uint32, t Type) []byte {
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:4], n)
	binary.BigEndian.PutUint32(h[4:8], id)
	h[8] = uint8(t)
	h[9] = Version
	return h[:]
}

// short keeps %x failure messages readable for large inputs.
func short(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

// readFrameCases are the table cases of TestReadFrame; FuzzReadFrame uses
// their inputs as seeds.
var readFrameCases = []struct {
	name    string
	in      []byte
	limit   int
	want    Frame
	wantErr error
}{
	{
		name:  "status request",
		in:    append(header(1, 0, TypeStatusRequest), 0x80),
		limit: DefaultMaxFrame,
		want:  Frame{RequestID: 0, Type: TypeStatusRequest, Version: Version, Body: []byte{0x80}},
	},
	{
		name:  "zero-length body",
		in:    header(0, 9, TypeCancel),
		limit: DefaultMaxFrame,
		want:  Frame{RequestID: 9, Type: TypeCancel, Version: Version, Body: []byte{}},
	},
	{
		name:  "zero-length body with zero limit",
		in:    header(0, 1, TypeCancel),
		limit: 0,
		want:  Frame{RequestID: 1, Type: TypeCancel, Version: Version, Body: []byte{}},
	},
	{
		name:  "body exactly at the limit",
		in:    append(header(4, 0xffffffff, TypeStdout), 1, 2, 3, 4),
		limit: 4,
		want:  Frame{RequestID: 0xffffffff, Type: TypeStdout, Version: Version, Body: []byte{1, 2, 3, 4}},
	},
	{
		name:  "unknown type and version are returned, not judged",
		in:    append(header(1, 3, Type(0xee)), 0x80),
		limit: 16,
		want:  Frame{RequestID: 3, Type: Type(0xee), Version: Version, Body: []byte{0x80}},
	},
	{
		name:  "only the first frame is read",
		in:    append(append(header(1, 5, TypeDone), 0x80), header(0, 6, TypeDone)...),
		limit: 16,
		want:  Frame{RequestID: 5, Type: TypeDone, Version: Version, Body: []byte{0x80}},
	},
	{
		name:  "body larger than the first read chunk",
		in:    append(header(3*readChunk+7, 2, TypeStdout), bytes.Repeat([]byte{'x'}, 3*readChunk+7)...),
		limit: DefaultMaxFrame,
		want:  Frame{RequestID: 2, Type: TypeStdout, Version: Version, Body: bytes.Repeat([]byte{'x'}, 3*readChunk+7)},
	},
	{
		name:    "body one over the limit",
		in:      append(header(5, 1, TypeStdout), 1, 2, 3, 4, 5),
		limit:   4,
		wantErr: ErrFrameTooLarge,
	},
	{
		name:    "largest header with the default limit",
		in:      header(0xffffffff, 1, TypeStdout),
		limit:   DefaultMaxFrame,
		wantErr: ErrFrameTooLarge,
	},
	{
		name:    "negative limit fails closed",
		in:      append(header(1, 1, TypeStdout), 0x80),
		limit:   -1,
		wantErr: ErrFrameTooLarge,
	},
	{
		name:    "clean end of stream",
		in:      nil,
		limit:   DefaultMaxFrame,
		wantErr: io.EOF,
	},
	{
		name:    "truncated header",
		in:      header(1, 1, TypeStdout)[:5],
		limit:   DefaultMaxFrame,
		wantErr: io.ErrUnexpectedEOF,
	},
	{
		name:    "header without its body",
		in:      header(8, 1, TypeStdout),
		limit:   DefaultMaxFrame,
		wantErr: io.ErrUnexpectedEOF,
	},
	{
		name:    "truncated body",
		in:      append(header(8, 1, TypeStdout), 1, 2, 3),
		limit:   DefaultMaxFrame,
		wantErr: io.ErrUnexpectedEOF,
	},
	{
		name:    "body cut after the first read chunk",
		in:      append(header(2*readChunk, 1, TypeStdout), make([]byte, readChunk+1)...),
		limit:   DefaultMaxFrame,
		wantErr: io.ErrUnexpectedEOF,
	},
}

func TestReadFrame(t *testing.T) {
	for _, tc := range readFrameCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ReadFrame(bytes.NewReader(tc.in), tc.limit)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ReadFrame(%x) = %v, want %v", short(tc.in), err, tc.wantErr)
				}
				if tc.wantErr == io.EOF && err != io.EOF {
					t.Fatalf("ReadFrame(%x) = %v, want io.EOF itself", short(tc.in), err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadFrame(%x) = %v, want %+v", short(tc.in), err, tc.want)
			}
			if got.RequestID != tc.want.RequestID || got.Type != tc.want.Type || got.Version != tc.want.Version || !bytes.Equal(got.Body, tc.want.Body) || got.Body == nil {
				t.Fatalf("ReadFrame(%x) = %d/%s/%d/%x, want %d/%s/%d/%x", short(tc.in),
					got.RequestID, got.Type, got.Version, short(got.Body),
					tc.want.RequestID, tc.want.Type, tc.want.Version, short(tc.want.Body))
			}
			if enc := AppendFrame(nil, got); !bytes.Equal(enc, tc.in[:len(enc)]) {
				t.Fatalf("AppendFrame(ReadFrame(%x)) = %x, want the input back", short(tc.in), short(enc))
			}
		})
	}
}

// headerOnly supplies one header and fails any read beyond it.
type headerOnly struct {
	h     []byte
	extra bool // a read past the header happened
}

var errReadPastHeader = errors.New("read past the header")

func (r *headerOnly) Read(p []byte) (int, error) {
	if len(r.h) == 0 {
		r.extra = true
		return 0, errReadPastHeader
	}
	n := copy(p, r.h)
	r.h = r.h[n:]
	return n, nil
}

// bytesAllocated reports how many bytes f allocates, averaged over runs.
func bytesAllocated(runs int, f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range runs {
		f()
	}
	runtime.ReadMemStats(&after)
	return (after.TotalAlloc - before.TotalAlloc) / uint64(runs)
}

func TestReadFrameOversizeAllocatesNothing(t *testing.T) {
	const limit = 1 << 30
	h := header(limit+1, 1, TypeStdout)
	var err error
	var r *headerOnly
	n := bytesAllocated(20, func() {
		r = &headerOnly{h: h}
		_, err = ReadFrame(r, limit)
	})
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("ReadFrame(%x) = %v, want %v", h, err, ErrFrameTooLarge)
	}
	if r.extra {
		t.Fatalf("ReadFrame(%x) read past the header of an oversize frame", h)
	}
	if n > 4<<10 {
		t.Fatalf("ReadFrame(%x) allocated %d bytes per call, want almost none", h, n)
	}
}

func TestReadFrameAllocatesWhatArrives(t *testing.T) {
	// A header announcing a body within the limit, then nothing: the reader
	// must not reserve the announced size up front.
	h := header(DefaultMaxFrame, 1, TypeStdout)
	var err error
	n := bytesAllocated(20, func() {
		_, err = ReadFrame(bytes.NewReader(h), DefaultMaxFrame)
	})
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("ReadFrame(%x) = %v, want %v", h, err, io.ErrUnexpectedEOF)
	}
	if n > 2*readChunk {
		t.Fatalf("ReadFrame(%x) allocated %d bytes per call for an absent body, want at most %d", h, n, 2*readChunk)
	}
}

func TestWriteFrameReadFramePipe(t *testing.T) {
	frames := []Frame{
		{RequestID: 0, Type: TypeHello, Version: Version, Body: []byte{0x82, 0xa1, 'v', 0x01, 0xa1, 's', 0xa0}},
		{RequestID: 1, Type: TypeCancel, Version: Version, Body: []byte{}},
		{RequestID: 0xffffffff, Type: TypeStdout, Version: Version, Body: bytes.Repeat([]byte{0xab}, 2*readChunk+3)},
		{RequestID: 7, Type: Type(0xfe), Version: 99, Body: []byte("not msgpack, not judged")},
	}
	for _, tc := range goldenCases {
		f, err := NewFrame(tc.id, tc.typ, tc.body)
		if err != nil {
			t.Fatalf("NewFrame(%s): %v", tc.name, err)
		}
		frames = append(frames, f)
	}
	for _, want := range frames {
		t.Run(fmt.Sprintf("%s/%d/%d", want.Type, want.RequestID, len(want.Body)), func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			defer b.Close()
			werr := make(chan error, 1)
			go func() { werr <- WriteFrame(a, want) }()
			got, err := ReadFrame(b, DefaultMaxFrame)
			if err != nil {
				t.Fatalf("ReadFrame(pipe) = %v, want %+v", err, want)
			}
			if err := <-werr; err != nil {
				t.Fatalf("WriteFrame = %v, want nil", err)
			}
			if got.RequestID != want.RequestID || got.Type != want.Type || got.Version != want.Version || !bytes.Equal(got.Body, want.Body) {
				t.Fatalf("ReadFrame(pipe) = %d/%s/%d/%x, want %d/%s/%d/%x",
					got.RequestID, got.Type, got.Version, short(got.Body),
					want.RequestID, want.Type, want.Version, short(want.Body))
			}
		})
	}
}

// TestWriteFrameConcurrentWriters checks that writers serialised by a mutex
// around WriteFrame never interleave partial frames on the stream.
func TestWriteFrameConcurrentWriters(t *testing.T) {
	const writers, each = 4, 50
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				body := bytes.Repeat([]byte{byte(w)}, 1+i*997%(3*readChunk))
				mu.Lock()
				err := WriteFrame(a, Frame{RequestID: uint32(w), Type: TypeStdout, Version: Version, Body: body})
				mu.Unlock()
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	seen := make([]int, writers)
	for range writers * each {
		f, err := ReadFrame(b, DefaultMaxFrame)
		if err != nil {
			t.Fatalf("ReadFrame(pipe) = %v, want a frame", err)
		}
		w := int(f.RequestID)
		if w >= writers {
			t.Fatalf("ReadFrame(pipe) request id = %d, want < %d", w, writers)
		}
		want := bytes.Repeat([]byte{byte(w)}, 1+seen[w]*997%(3*readChunk))
		if !bytes.Equal(f.Body, want) {
			t.Fatalf("ReadFrame(pipe) frame %d of writer %d = %x (%d bytes), want %x (%d bytes)", seen[w], w, short(f.Body), len(f.Body), short(want), len(want))
		}
		seen[w]++
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("WriteFrame = %v, want nil", err)
	}
}
