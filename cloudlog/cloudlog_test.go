package cloudlog

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

func logLine(t *testing.T, f *Formatter, level logrus.Level, fields logrus.Fields, msg string) map[string]any {
	t.Helper()
	var buf bytes.Buffer
	l := logrus.New()
	l.SetOutput(&buf)
	l.SetLevel(logrus.TraceLevel)
	l.SetFormatter(f)
	l.WithFields(fields).Log(level, msg)
	if bytes.Count(buf.Bytes(), []byte("\n")) != 1 {
		t.Fatalf("want one line, got %q", buf.String())
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("line %q is not JSON: %v", buf.String(), err)
	}
	return m
}

func TestSeverityMessageTime(t *testing.T) {
	for _, tc := range []struct {
		level logrus.Level
		want  string
	}{
		{logrus.TraceLevel, "DEBUG"}, {logrus.DebugLevel, "DEBUG"}, {logrus.InfoLevel, "INFO"},
		{logrus.WarnLevel, "WARNING"}, {logrus.ErrorLevel, "ERROR"},
	} {
		before := time.Now().Add(-time.Second)
		m := logLine(t, &Formatter{}, tc.level, logrus.Fields{"n": 1, "error": errors.New("boom")}, "hello")
		if m["severity"] != tc.want || m["message"] != "hello" {
			t.Errorf("%v: severity %v message %v, want %s hello", tc.level, m["severity"], m["message"], tc.want)
		}
		ts, err := time.Parse(time.RFC3339Nano, m["time"].(string))
		if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) {
			t.Errorf("time %v: %v", m["time"], err)
		}
		if m["n"] != float64(1) || m["error"] != "boom" {
			t.Errorf("fields not kept: %v", m)
		}
		if _, ok := m["level"]; ok {
			t.Errorf("logrus's level key is written: %v", m)
		}
	}
	if Severity(logrus.FatalLevel) != "CRITICAL" || Severity(logrus.PanicLevel) != "ALERT" {
		t.Error("fatal/panic severities")
	}
}

func TestRequestIDLabelAndTrace(t *testing.T) {
	fields := logrus.Fields{FieldRequestID: "r-1", FieldTrace: "4bf92f3577b34da6a3ce929d0e0e4736", FieldSpan: "00f067aa0ba902b7", FieldTraceSampled: true}
	m := logLine(t, &Formatter{ProjectID: "my-proj"}, logrus.InfoLevel, fields, "request")
	labels, _ := m["logging.googleapis.com/labels"].(map[string]any)
	if labels["request_id"] != "r-1" || m["request_id"] != "r-1" {
		t.Errorf("labels %v, request_id %v", labels, m["request_id"])
	}
	if m["logging.googleapis.com/trace"] != "projects/my-proj/traces/4bf92f3577b34da6a3ce929d0e0e4736" ||
		m["logging.googleapis.com/spanId"] != "00f067aa0ba902b7" || m["logging.googleapis.com/trace_sampled"] != true {
		t.Errorf("trace fields: %v", m)
	}
	if _, ok := m["trace"]; ok {
		t.Errorf("plain trace kept beside the mapped one: %v", m)
	}
	// Without a project the trace cannot be a resource name: it stays a
	// plain field.
	m = logLine(t, &Formatter{}, logrus.InfoLevel, fields, "request")
	if _, ok := m["logging.googleapis.com/trace"]; ok || m["trace"] != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Errorf("without a project: %v", m)
	}
}

func TestFieldsCannotShadowSpecialKeys(t *testing.T) {
	m := logLine(t, &Formatter{}, logrus.ErrorLevel, logrus.Fields{"severity": "DEBUG", "message": "forged"}, "real")
	if m["severity"] != "ERROR" || m["message"] != "real" || m["fields.severity"] != "DEBUG" || m["fields.message"] != "forged" {
		t.Errorf("%v", m)
	}
}

func TestParseTrace(t *testing.T) {
	for _, tc := range []struct {
		name, tp, cloud string
		want            Trace
		ok              bool
	}{
		{"traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", Trace{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true}, true},
		{"traceparent unsampled, upper case", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00", "", Trace{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", false}, true},
		{"traceparent wins", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "105445aa7843bc8bf206b12000100000/1;o=1", Trace{"4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true}, true},
		{"cloud trace context", "", "105445aa7843bc8bf206b12000100000/1;o=1", Trace{"105445aa7843bc8bf206b12000100000", "0000000000000001", true}, true},
		{"cloud trace without span", "", "105445aa7843bc8bf206b12000100000", Trace{"105445aa7843bc8bf206b12000100000", "", false}, true},
		{"bad traceparent falls back", "00-xyz-00f067aa0ba902b7-01", "105445aa7843bc8bf206b12000100000/7;o=0", Trace{"105445aa7843bc8bf206b12000100000", "0000000000000007", false}, true},
		{"all-zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", Trace{}, false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "", Trace{}, false},
		{"short cloud id", "", "105445aa/1", Trace{}, false},
		{"none", "", "", Trace{}, false},
	} {
		got, ok := ParseTrace(tc.tp, tc.cloud)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: ParseTrace = %+v, %v; want %+v, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
