package wire

import (
	"bytes"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
)

// Hello opens a connection in each direction.
type Hello struct {
	Version  int    `msgpack:"version"`
	Software string `msgpack:"software"`
	// Features is optional: in the client's hello, the optional features
	// it understands; in the supervisor's, the ones it will use on this
	// connection, a subset of the client's (see FeatureSet). Omitted when
	// empty, so a base-protocol hello is byte for byte what peers without
	// features send, and they ignore the key when it is there.
	Features []string `msgpack:"features,omitempty"`
}

// Limits are per-execution limits a client may ask for. Every zero field means
// the server default; a value above the server maximum is refused.
type Limits struct {
	TimeoutMS     int64 `msgpack:"timeout_ms"`
	MemoryBytes   int64 `msgpack:"memory_bytes"`
	Pids          int64 `msgpack:"pids"`
	CPUMS         int64 `msgpack:"cpu_ms"`
	FileSizeBytes int64 `msgpack:"file_size_bytes"`
	OpenFiles     int64 `msgpack:"open_files"`
	TmpBytes      int64 `msgpack:"tmp_bytes"`
	TmpInodes     int64 `msgpack:"tmp_inodes"`
	OutputBytes   int64 `msgpack:"output_bytes"`
	ResultBytes   int64 `msgpack:"result_bytes"`
	// The caps of the "io" feature (args and files); omitted when zero
	// so a base-protocol execute encodes as before.
	ArgsBytes     int64 `msgpack:"args_bytes,omitempty"`
	FilesInCount  int64 `msgpack:"files_in_count,omitempty"`
	FilesInBytes  int64 `msgpack:"files_in_bytes,omitempty"`
	FilesOutCount int64 `msgpack:"files_out_count,omitempty"`
	FilesOutBytes int64 `msgpack:"files_out_bytes,omitempty"`
}

// Execute asks the supervisor to run one script.
type Execute struct {
	Script string `msgpack:"script"`
	// TraceID is the caller's request id (e.g. HTTP X-Request-Id); "" = none.
	TraceID string `msgpack:"trace_id"`
	Limits  Limits `msgpack:"limits"`
	// MaxQueueMS is the longest the caller will wait for the execution to
	// start (optional, 0 = the supervisor's own bound): a caller whose
	// deadline counts queueing says so, and gets busy instead of a late
	// start. The supervisor uses the smaller of this and its own bound.
	MaxQueueMS int64 `msgpack:"max_queue_ms,omitempty"`
	// Args and Files need the "io" feature (FeatureIO). Args is the JSON
	// text of an object whose members main() is called with; nil = call
	// main() with none. Files are written into the working directory
	// before the script is imported.
	Args  []byte `msgpack:"args,omitempty"`
	Files []File `msgpack:"files,omitempty"`
}

// File is a file given to or collected from an execution: its path
// relative to the working directory (or to output/) and its bytes.
type File struct {
	Name string `msgpack:"name"`
	Data []byte `msgpack:"data"`
}

// RunnerRequest is the one message the supervisor sends a jailed runner.
type RunnerRequest struct {
	Script string `msgpack:"script"`
	// MaxResultBytes caps the encoded result; 0 = no cap (the supervisor
	// enforces its own cap on what it reads regardless).
	MaxResultBytes int64 `msgpack:"max_result_bytes"`
	// Args, Files: as in Execute (omitted when absent). MaxFilesOut and
	// MaxFilesOutBytes cap what the runner collects from output/; 0 = do
	// not collect.
	Args             []byte `msgpack:"args,omitempty"`
	Files            []File `msgpack:"files,omitempty"`
	MaxFilesOut      int64  `msgpack:"max_files_out,omitempty"`
	MaxFilesOutBytes int64  `msgpack:"max_files_out_bytes,omitempty"`
	// MaxImages and MaxImageBytes ask the runner for the figures still
	// open when main() returns (feature FeatureImages): at most that many
	// PNGs, that many bytes in all. Omitted (0) = no images are wanted.
	MaxImages     int64 `msgpack:"max_images,omitempty"`
	MaxImageBytes int64 `msgpack:"max_image_bytes,omitempty"`
}

// Chunk is a piece of stdout or stderr.
type Chunk struct {
	Data []byte `msgpack:"data"`
}

// Result carries main()'s return value as JSON text, passed through untouched.
type Result struct {
	JSON []byte `msgpack:"json"`
	// Files are the files the script left in output/ (FeatureIO; omitted
	// when none), FilesTruncated whether any were left out by a cap.
	Files          []File `msgpack:"files,omitempty"`
	FilesTruncated bool   `msgpack:"files_truncated,omitempty"`
	// Images are the figures left open by main() (feature FeatureImages
	// only; omitted when there are none), and ImagesTruncated says some
	// were left out for the caps.
	Images          []Image `msgpack:"images,omitempty"`
	ImagesTruncated bool    `msgpack:"images_truncated,omitempty"`
}

// Image is one rendered figure: its media type (only "image/png" so far)
// and its bytes.
type Image struct {
	MediaType string `msgpack:"media_type"`
	Data      []byte `msgpack:"data"`
}

// ErrorType is a stable error code; see PROTOCOL.md. Codes are never renamed.
type ErrorType string

// Error codes.
const (
	ErrSyntax      ErrorType = "syntax_error"
	ErrMissingMain ErrorType = "missing_main"
	// ErrInvalidArgs: the request's args cannot be bound to main()'s
	// parameters (FeatureIO).
	ErrInvalidArgs     ErrorType = "invalid_args"
	ErrInvalidResult   ErrorType = "invalid_result"
	ErrResultTooLarge  ErrorType = "result_too_large"
	ErrException       ErrorType = "exception"
	ErrExited          ErrorType = "exited"
	ErrTimeout         ErrorType = "timeout"
	ErrMemoryLimit     ErrorType = "memory_limit"
	ErrResourceLimit   ErrorType = "resource_limit"
	ErrBusy            ErrorType = "busy"
	ErrInvalidRequest  ErrorType = "invalid_request"
	ErrCancelled       ErrorType = "cancelled"
	ErrVersionMismatch ErrorType = "version_mismatch"
	ErrProtocol        ErrorType = "protocol_error"
	ErrInternal        ErrorType = "internal"
	// ErrResultCorrupted: the script's process sent something on the result
	// channel that no honest runner sends (garbage, a malformed frame, a
	// claim of an internal failure). Attributed to the script.
	ErrResultCorrupted ErrorType = "result_corrupted"
)

// Error is an execution's failure (or a connection-level refusal on id 0).
type Error struct {
	Type      ErrorType `msgpack:"type"`
	Message   string    `msgpack:"message"`
	Traceback string    `msgpack:"traceback"`
}

func (e *Error) Error() string { return string(e.Type) + ": " + e.Message }

// ExitReason says how an execution ended.
type ExitReason string

// Exit reasons.
const (
	ExitOK          ExitReason = "ok"
	ExitError       ExitReason = "error"
	ExitTimeout     ExitReason = "timeout"
	ExitMemoryLimit ExitReason = "memory_limit"
	ExitKilled      ExitReason = "killed"
	ExitCancelled   ExitReason = "cancelled"
	ExitExited      ExitReason = "exited"
)

// Done ends one execution's event stream.
type Done struct {
	WallMS          int64      `msgpack:"wall_ms"`
	CPUMS           int64      `msgpack:"cpu_ms"`
	PeakMemoryBytes int64      `msgpack:"peak_memory_bytes"`
	ExitReason      ExitReason `msgpack:"exit_reason"`
	StdoutTruncated bool       `msgpack:"stdout_truncated"`
	StderrTruncated bool       `msgpack:"stderr_truncated"`
	ExitCode        int        `msgpack:"exit_code"`
	Signal          int        `msgpack:"signal"`
	// QueueMS is how long the execution waited for a slot (optional:
	// omitted when it did not wait).
	QueueMS int64 `msgpack:"queue_ms,omitempty"`
}

// Status describes the supervisor, for health checks.
type Status struct {
	Software  string `msgpack:"software"`
	Engine    string `msgpack:"engine"`
	Isolation string `msgpack:"isolation"`
	Cgroups   string `msgpack:"cgroups"`
	Running   int    `msgpack:"running"`
	Queued    int    `msgpack:"queued"`
	Slots     int    `msgpack:"slots"`
	QueueSize int    `msgpack:"queue_size"`
	// NotReady says why executions cannot run now (no zygote for a while,
	// shutting down); omitted while they can.
	NotReady string `msgpack:"not_ready,omitempty"`
	// MaxQueueMS is the longest an execution waits for a slot before busy.
	MaxQueueMS int64 `msgpack:"max_queue_ms,omitempty"`
	// Tier, Protections and Missing are optional (absent from older
	// supervisors): the isolation tier, the protections every execution
	// gets, and those the tier lacks on this host.
	Tier        string   `msgpack:"tier,omitempty"`
	Protections []string `msgpack:"protections,omitempty"`
	Missing     []string `msgpack:"missing,omitempty"`
}

// MetricsFormat is the only Metrics.Format so far: the Prometheus text
// exposition format, version 0.0.4, as its HTTP content type.
const MetricsFormat = "text/plain; version=0.0.4; charset=utf-8"

// Metrics is the supervisor's answer to a metrics_request (feature
// FeatureMetrics): its own metrics, in Format (MetricsFormat), as Text.
type Metrics struct {
	Format string `msgpack:"format"`
	Text   []byte `msgpack:"text"`
}

// Marshal encodes v as a msgpack body with the smallest integer encodings, so
// the bytes match what Python's msgpack writes for the same map.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes a msgpack body into v. Unknown keys are ignored so fields
// can be added without a version bump. Any decoding failure is a
// *ProtocolError.
//
// The body is checked with checkBody before the decoder sees it: it must be
// exactly one msgpack map, nested at most 32 deep, whose every declared
// length fits in the bytes that follow. The msgpack decoder trusts declared
// lengths (a 20-byte body claiming a 4 GiB bin makes it allocate 4 GiB) and
// recurses once per nesting level (a deep enough body overflows the goroutine
// stack, which kills the process); the check rules out both, so decoding a
// body allocates in proportion to its size.
func Unmarshal(b []byte, v any) error {
	if err := checkBody(b); err != nil {
		return &ProtocolError{Reason: fmt.Sprintf("decode %T: %v", v, err)}
	}
	dec := msgpack.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return &ProtocolError{Reason: fmt.Sprintf("decode %T: %v", v, err)}
	}
	return nil
}

// NewFrame marshals v into a frame of type t for request id.
func NewFrame(id uint32, t Type, v any) (Frame, error) {
	body, err := Marshal(v)
	if err != nil {
		return Frame{}, fmt.Errorf("encode %s: %w", t, err)
	}
	return Frame{RequestID: id, Type: t, Version: Version, Body: body}, nil
}

// Empty is the body of messages that carry nothing (cancel, status_request).
type Empty struct{}
