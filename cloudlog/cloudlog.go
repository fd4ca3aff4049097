// Package cloudlog is the JSON log format of both binaries: one object a
// line with the fields Google Cloud Logging maps from a container's output
// (severity, message, time, the trace and labels), so a deployed instance's
// logs show their levels and group by request without configuration; any
// other collector reads it as plain JSON. It is public (no privileged code)
// so the gateway and the supervisor share it.
//
// The key names below are Cloud Logging's "special fields" of structured
// logging; the README's section "Logs" describes what each line carries.
package cloudlog

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/sirupsen/logrus"
)

// Field names a logger's entries use that the formatter maps to Cloud
// Logging's special fields; every other field is written as it is.
const (
	// FieldRequestID (the request id) also goes into the entry's labels,
	// which Cloud Logging indexes: "logging.googleapis.com/labels".
	FieldRequestID = "request_id"
	// FieldTrace is the trace id (32 hex digits) of the request a line
	// belongs to; with a project it becomes
	// "logging.googleapis.com/trace" = projects/<project>/traces/<id>,
	// which groups the lines under their request in the console.
	FieldTrace = "trace"
	// FieldSpan is the span id, "logging.googleapis.com/spanId".
	FieldSpan = "span_id"
	// FieldTraceSampled is "logging.googleapis.com/trace_sampled".
	FieldTraceSampled = "trace_sampled"
	// FieldHTTPRequest is an access log line's HTTPRequest, written as
	// Cloud Logging's "httpRequest".
	FieldHTTPRequest = "httpRequest"
)

// Cloud Logging's special keys.
const (
	keySeverity = "severity"
	keyMessage  = "message"
	keyTime     = "time"
	keyLabels   = "logging.googleapis.com/labels"
	keyTrace    = "logging.googleapis.com/trace"
	keySpan     = "logging.googleapis.com/spanId"
	keySampled  = "logging.googleapis.com/trace_sampled"
)

// Formatter writes an entry as one JSON object. The zero value is usable;
// without a project the trace stays a plain "trace" field (Cloud Logging
// needs the project in the trace's resource name).
type Formatter struct {
	// ProjectID is the Google Cloud project (GOOGLE_CLOUD_PROJECT), "" when
	// unknown.
	ProjectID string
}

// Severity maps a logrus level to Cloud Logging's LogSeverity name.
func Severity(l logrus.Level) string {
	switch l {
	case logrus.TraceLevel, logrus.DebugLevel:
		return "DEBUG"
	case logrus.InfoLevel:
		return "INFO"
	case logrus.WarnLevel:
		return "WARNING"
	case logrus.ErrorLevel:
		return "ERROR"
	case logrus.FatalLevel:
		return "CRITICAL"
	case logrus.PanicLevel:
		return "ALERT"
	}
	return "DEFAULT"
}

// Format implements logrus.Formatter.
func (f *Formatter) Format(e *logrus.Entry) ([]byte, error) {
	m := make(map[string]any, len(e.Data)+4)
	for k, v := range e.Data {
		switch v := v.(type) {
		case error:
			// encoding/json writes most errors as {}.
			m[k] = v.Error()
		default:
			m[k] = v
		}
	}
	// Fields cannot shadow the special keys: a field of that name is kept
	// under "fields.<name>", as logrus's own formatter does.
	for _, k := range []string{keySeverity, keyMessage, keyTime, keyLabels, keyTrace, keySpan, keySampled} {
		if v, ok := m[k]; ok {
			m["fields."+k] = v
			delete(m, k)
		}
	}
	m[keySeverity] = Severity(e.Level)
	m[keyMessage] = e.Message
	m[keyTime] = e.Time.UTC().Format(time.RFC3339Nano)
	if id, ok := m[FieldRequestID].(string); ok && id != "" {
		m[keyLabels] = map[string]string{FieldRequestID: id}
	}
	if t, ok := m[FieldTrace].(string); ok && t != "" && f.ProjectID != "" {
		m[keyTrace] = "projects/" + f.ProjectID + "/traces/" + t
		delete(m, FieldTrace)
		if s, ok := m[FieldSpan].(string); ok && s != "" {
			m[keySpan] = s
			delete(m, FieldSpan)
		}
		if s, ok := m[FieldTraceSampled].(bool); ok {
			m[keySampled] = s
			delete(m, FieldTraceSampled)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("cloudlog: marshal entry: %w", err)
	}
	return append(b, '\n'), nil
}

// HTTPRequest is Cloud Logging's HttpRequest, the fields an access log line
// fills.
type HTTPRequest struct {
	RequestMethod string `json:"requestMethod"`
	RequestURL    string `json:"requestUrl"`
	Status        int    `json:"status"`
	// Latency is a protobuf Duration in JSON: seconds with an "s".
	Latency      string `json:"latency"`
	RemoteIP     string `json:"remoteIp,omitempty"`
	UserAgent    string `json:"userAgent,omitempty"`
	RequestSize  string `json:"requestSize,omitempty"`
	ResponseSize string `json:"responseSize,omitempty"`
	Protocol     string `json:"protocol,omitempty"`
}

// Latency formats d as a protobuf Duration ("0.012345s").
func Latency(d time.Duration) string {
	return fmt.Sprintf("%.6fs", d.Seconds())
}

// Trace is the trace context of an incoming request.
type Trace struct {
	ID      string // 32 lowercase hex digits
	SpanID  string // 16 lowercase hex digits, "" when the header had none
	Sampled bool
}

// ParseTrace reads the trace context of a request from its headers:
// traceparent (W3C Trace Context) first, then X-Cloud-Trace-Context
// ("TRACE_ID/SPAN_ID;o=1"), which Google's front ends add. ok is false when
// neither header holds a valid trace id.
func ParseTrace(traceparent, cloudTraceContext string) (t Trace, ok bool) {
	if t, ok := parseTraceparent(traceparent); ok {
		return t, true
	}
	return parseCloudTrace(cloudTraceContext)
}

// parseTraceparent: version "00", then trace id (32 hex, not all zero),
// parent id (16 hex, not all zero) and flags (2 hex), dash-separated.
func parseTraceparent(h string) (Trace, bool) {
	p := strings.Split(strings.TrimSpace(h), "-")
	if len(p) < 4 || len(p[0]) != 2 || p[0] == "ff" || !isHex(p[0]) ||
		len(p[1]) != 32 || !isHex(p[1]) || allZero(p[1]) ||
		len(p[2]) != 16 || !isHex(p[2]) || allZero(p[2]) ||
		len(p[3]) != 2 || !isHex(p[3]) {
		return Trace{}, false
	}
	if p[0] == "00" && len(p) != 4 {
		return Trace{}, false
	}
	sampled := strings.IndexByte("13579bdfBDF", p[3][1]) >= 0
	return Trace{ID: strings.ToLower(p[1]), SpanID: strings.ToLower(p[2]), Sampled: sampled}, true
}

// parseCloudTrace: "TRACE_ID[/SPAN_ID][;o=OPTIONS]", TRACE_ID 32 hex,
// SPAN_ID decimal.
func parseCloudTrace(h string) (Trace, bool) {
	h = strings.TrimSpace(h)
	rest, opts, _ := strings.Cut(h, ";")
	id, span, _ := strings.Cut(rest, "/")
	if len(id) != 32 || !isHex(id) || allZero(id) {
		return Trace{}, false
	}
	// Cloud Logging's spanId is 16 hex digits; the header's is decimal.
	if n, err := strconv.ParseUint(span, 10, 64); err == nil && n != 0 {
		span = fmt.Sprintf("%016x", n)
	} else {
		span = ""
	}
	return Trace{ID: strings.ToLower(id), SpanID: span, Sampled: strings.TrimSpace(opts) == "o=1"}, true
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}

func allZero(s string) bool { return strings.Trim(s, "0") == "" }
