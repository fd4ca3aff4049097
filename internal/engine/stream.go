package engine

import (
	"io"
)

// chunkSize is how much output is read (and forwarded) at a time.
const chunkSize = 32 << 10

// capturedStream reads a jailed process's output to EOF, forwards the first
// limit bytes chunk by chunk, and drains the rest so the writer never blocks
// on a full pipe. It reports whether anything was dropped.
func captureStream(r io.Reader, limit int64, emit func([]byte)) (truncated bool) {
	buf := make([]byte, chunkSize)
	var kept int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			keep := int64(n)
			if room := limit - kept; keep > room {
				keep = room
				truncated = true
			}
			if keep > 0 && emit != nil {
				// The receiver may hold on to the chunk; hand it a copy.
				emit(append([]byte(nil), buf[:keep]...))
			}
			kept += keep
		}
		if err != nil {
			return truncated
		}
	}
}
