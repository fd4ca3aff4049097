package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendString(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `""`},
		{"plain", `"plain"`},
		{"a\"b\\c", `"a\"b\\c"`},
		{"\n\r\t", `"\n\r\t"`},
		{"\x00\x1f\x7f", `"\u0000\u001f` + "\x7f" + `"`},
		{"<&>", `"<&>"`},
		{"é€😀", `"é€😀"`},
		{"\u2028\u2029", `"\u2028\u2029"`},
		{"\xff", "\"\ufffd\""},
		{"a\xc3", "\"a\ufffd\""},
		{"\xe2\x82\xac\xe2\x82", "\"€\ufffd\ufffd\""},
		{"\xed\xa0\x80", "\"\ufffd\ufffd\ufffd\""}, // a UTF-16 surrogate encoded in UTF-8
		{"\ufffd", "\"\ufffd\""},
	}
	for _, tt := range tests {
		if got := string(appendString(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("appendString(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "a\"\\\n", "\xff\xfe", "é\u2028", "\x00"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out := appendString(nil, in)
		var got string
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("appendString(%q) = %s: not JSON: %v", in, out, err)
		}
		if !utf8.Valid(out) {
			t.Fatalf("appendString(%q) = %q: not UTF-8", in, out)
		}
		// Valid UTF-8 comes back unchanged; encoding/json coerces invalid
		// bytes the same way we do.
		if want := strings.ToValidUTF8(string(in), "\ufffd"); utf8.Valid(in) && got != want {
			t.Fatalf("appendString(%q) round trip = %q", in, got)
		}
	})
}
