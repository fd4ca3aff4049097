// Package wire is the framing and the message types of the supervisor protocol
// (see PROTOCOL.md beside this file). It is imported by the supervisor, by its Go
// client (client) and by anything else that speaks the protocol; it
// imports nothing of the project.
package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
)

// Version is the protocol version this package speaks.
const Version uint8 = 1

// HeaderSize is the size of the fixed frame header in bytes.
const HeaderSize = 10

// DefaultMaxFrame is the default largest body a receiver accepts.
const DefaultMaxFrame = 16 << 20

// Type is a message type. The zero value is invalid. Values are fixed on the
// wire: append, never renumber.
type Type uint8

// Message types; see PROTOCOL.md.
const (
	TypeHello         Type = 0x01
	TypeExecute       Type = 0x02
	TypeCancel        Type = 0x03
	TypeStatusRequest Type = 0x04
	// TypeMetricsRequest and TypeMetrics need the "metrics" feature
	// (FeatureMetrics).
	TypeMetricsRequest Type = 0x05
	TypeStdout         Type = 0x10
	TypeStderr         Type = 0x11
	TypeResult         Type = 0x12
	TypeError          Type = 0x13
	TypeDone           Type = 0x14
	TypeStatus         Type = 0x15
	TypeMetrics        Type = 0x16
)

var typeNames = map[Type]string{
	TypeHello:          "hello",
	TypeExecute:        "execute",
	TypeCancel:         "cancel",
	TypeStatusRequest:  "status_request",
	TypeStdout:         "stdout",
	TypeStderr:         "stderr",
	TypeResult:         "result",
	TypeError:          "error",
	TypeDone:           "done",
	TypeStatus:         "status",
	TypeMetricsRequest: "metrics_request",
	TypeMetrics:        "metrics",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(0x%02x)", uint8(t))
}

// Known reports whether t is a message type of this protocol version.
func (t Type) Known() bool {
	_, ok := typeNames[t]
	return ok
}

// Frame is one protocol frame: a header and a raw msgpack body.
type Frame struct {
	RequestID uint32
	Type      Type
	Version   uint8
	Body      []byte
}

// ErrFrameTooLarge is returned when a frame header announces a body over the
// receiver's maximum. The connection cannot be resynchronised after it.
var ErrFrameTooLarge = errors.New("frame too large")

// ProtocolError is a malformed frame or message. The connection that produced it
// must be closed.
type ProtocolError struct {
	Reason string
}

func (e *ProtocolError) Error() string { return "protocol error: " + e.Reason }

// AppendFrame appends the encoding of f to dst.
func AppendFrame(dst []byte, f Frame) []byte {
	var h [HeaderSize]byte
	binary.BigEndian.PutUint32(h[0:4], uint32(len(f.Body)))
	binary.BigEndian.PutUint32(h[4:8], f.RequestID)
	h[8] = uint8(f.Type)
	h[9] = f.Version
	dst = append(dst, h[:]...)
	return append(dst, f.Body...)
}

// WriteFrame writes f to w in one Write call, so concurrent writers that hold a
// lock around WriteFrame never interleave partial frames.
func WriteFrame(w io.Writer, f Frame) error {
	_, err := w.Write(AppendFrame(make([]byte, 0, HeaderSize+len(f.Body)), f))
	return err
}

// readChunk is how much of a frame body ReadFrame allocates before any of it
// has arrived; beyond it, the buffer grows as bytes are received.
const readChunk = 64 << 10

// ReadFrame reads one frame from r. A body over limit bytes yields
// ErrFrameTooLarge before anything is allocated for it; a negative limit is
// treated as 0. Memory for an accepted body grows with the bytes actually
// received (doubling from readChunk), so a header that announces a large body
// and then stalls costs readChunk, not the announced size. An unknown type is not checked here: dispatchers decide, so
// they can name it in their error. A clean end of stream before the first
// header byte returns io.EOF; a stream cut inside a frame returns
// io.ErrUnexpectedEOF. Other errors are r's, unwrapped.
func ReadFrame(r io.Reader, limit int) (Frame, error) {
	var h [HeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	n := binary.BigEndian.Uint32(h[0:4])
	if limit < 0 {
		limit = 0
	}
	if uint64(n) > uint64(limit) {
		return Frame{}, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, n, limit)
	}
	f := Frame{
		RequestID: binary.BigEndian.Uint32(h[4:8]),
		Type:      Type(h[8]),
		Version:   h[9],
	}
	body, err := readBody(r, int(n))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	f.Body = body
	return f, nil
}

// readBody reads exactly n bytes, growing the buffer by doubling from
// readChunk so that the allocation follows what the peer really sent.
func readBody(r io.Reader, n int) ([]byte, error) {
	b := make([]byte, min(n, readChunk))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	for len(b) < n {
		got := len(b)
		grow := min(n-got, got)
		b = slices.Grow(b, grow)[:got+grow]
		if _, err := io.ReadFull(r, b[got:]); err != nil {
			return nil, err
		}
	}
	return b, nil
}
