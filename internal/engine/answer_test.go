package engine

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/python-executor/python-executor/wire"
)

func errorFrame(t *testing.T, e wire.Error) wire.Frame {
	t.Helper()
	body, err := wire.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return wire.Frame{RequestID: 1, Type: wire.TypeError, Version: wire.Version, Body: body}
}

// A frame from the jail that claims an internal error is the script's
// doing (forged, or a runner the script broke), never the service's.
func TestAnswerClaimingInternalIsResultCorrupted(t *testing.T) {
	_, e := interpretAnswer(errorFrame(t, wire.Error{Type: wire.ErrInternal, Message: "runner failed: TypeError: x"}), DefaultLimits(), false)
	if e == nil || e.Type != wire.ErrResultCorrupted || !strings.HasSuffix(e.Message, ": runner failed: TypeError: x") {
		t.Fatalf("got %+v, want result_corrupted naming the runner's message", e)
	}
}

func TestMalformedAnswersAreResultCorrupted(t *testing.T) {
	for name, f := range map[string]wire.Frame{
		"unknown type":  {Type: wire.TypeExecute, Version: wire.Version, Body: []byte{0x80}},
		"bad msgpack":   {Type: wire.TypeError, Version: wire.Version, Body: []byte{0xc1}},
		"unknown error": errorFrame(t, wire.Error{Type: "made_up", Message: "x"}),
		"busy claimed":  errorFrame(t, wire.Error{Type: wire.ErrBusy, Message: "x"}),
	} {
		if _, e := interpretAnswer(f, DefaultLimits(), false); e == nil || e.Type != wire.ErrResultCorrupted {
			t.Errorf("%s: got %+v, want result_corrupted", name, e)
		}
	}
	// Garbage on the fd does not even make a header.
	if _, err := readRunnerAnswer(bytes.NewReader(bytes.Repeat([]byte{0xff}, 64)), 1<<20); err != errMalformedAnswer {
		t.Fatalf("garbage: %v", err)
	}
}

// Whatever the jail sends, the message and traceback the client sees are
// capped (a forged frame may carry megabytes of control characters, which
// JSON escapes to six bytes each).
func TestErrorTextFromTheJailIsCapped(t *testing.T) {
	huge := strings.Repeat("\x01", 9<<20)
	for _, typ := range []wire.ErrorType{wire.ErrException, wire.ErrSyntax, wire.ErrExited, wire.ErrInternal} {
		_, e := interpretAnswer(errorFrame(t, wire.Error{Type: typ, Message: "head" + huge + "tail", Traceback: "top" + huge + "bottom"}), DefaultLimits(), false)
		if e == nil {
			t.Fatalf("%s: no error", typ)
		}
		if n := utf8.RuneCountInString(e.Message); n > MaxErrorMessageRunes+64 {
			t.Errorf("%s: message of %d characters", typ, n)
		}
		if n := utf8.RuneCountInString(e.Traceback); n > MaxErrorTracebackRunes+64 {
			t.Errorf("%s: traceback of %d characters", typ, n)
		}
		if typ != wire.ErrInternal && (!strings.HasPrefix(e.Message, "head") || !strings.HasSuffix(e.Message, "tail") || !strings.HasSuffix(e.Traceback, "bottom")) {
			t.Errorf("%s: the clip must keep both ends", typ)
		}
	}
	// An honest runner's texts (already within the caps) pass unchanged.
	msg, tb := strings.Repeat("m", MaxErrorMessageRunes), strings.Repeat("é", MaxErrorTracebackRunes)
	if _, e := interpretAnswer(errorFrame(t, wire.Error{Type: wire.ErrException, Message: msg, Traceback: tb}), DefaultLimits(), false); e.Message != msg || e.Traceback != tb {
		t.Fatal("texts within the caps were changed")
	}
}

// The runner clips at the same lengths; its clipped text is not cut again.
func TestRunnerClippedTextIsNotCutAgain(t *testing.T) {
	clipped := clipText(strings.Repeat("x", 1<<20), MaxErrorMessageRunes)
	if again := clipText(clipped, MaxErrorMessageRunes); again != clipped {
		t.Fatal("a clipped text was clipped again")
	}
	// What runner._clip makes of a 1 MiB message, with its own marker.
	half := MaxErrorMessageRunes / 2
	runner := strings.Repeat("x", half) + "\n... [1040384 characters omitted] ...\n" + strings.Repeat("x", half)
	if clipText(runner, MaxErrorMessageRunes) != runner {
		t.Fatal("the runner's clipped message was cut again")
	}
}

// Output files in a result frame come from the jail: names that escape,
// repeat or are not text, and counts or sizes over the caps, are the
// script's corrupted answer, never passed on.
func TestOutputFilesFromTheJailAreChecked(t *testing.T) {
	lim := DefaultLimits()
	lim.FilesOutCount, lim.FilesOutBytes = 2, 10
	frame := func(files ...wire.File) wire.Frame {
		f, err := wire.NewFrame(1, wire.TypeResult, wire.Result{JSON: []byte("1"), Files: files})
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	for name, files := range map[string][]wire.File{
		"traversal":          {{Name: "../etc/passwd", Data: []byte("x")}},
		"absolute":           {{Name: "/etc/passwd"}},
		"empty":              {{Name: ""}},
		"not utf-8":          {{Name: "a\xff"}},
		"nul":                {{Name: "a\x00b"}},
		"twice":              {{Name: "a"}, {Name: "a"}},
		"too many":           {{Name: "a"}, {Name: "b"}, {Name: "c"}},
		"too large":          {{Name: "a", Data: make([]byte, 11)}},
		"long name":          {{Name: strings.Repeat("a", MaxOutputNameBytes+1)}},
		"long part":          {{Name: strings.Repeat("a", 4*255+1)}},
		"too deep":           {{Name: strings.Repeat("d/", MaxOutputDepth) + "f"}},
		"dot":                {{Name: "a/./b"}},
		"file and directory": {{Name: "a"}, {Name: "a/b"}},
		"directory and file": {{Name: "x/y/z"}, {Name: "x/y"}},
	} {
		if _, e := interpretAnswer(frame(files...), lim, false); e == nil || e.Type != wire.ErrResultCorrupted {
			t.Errorf("%s: got %v, want result_corrupted", name, e)
		}
	}
	res, e := interpretAnswer(frame(wire.File{Name: "sub/a\nb.csv", Data: []byte("1,2")}), lim, false)
	if e != nil || string(res.JSON) != "1" || len(res.Files) != 1 || res.Files[0].Name != "sub/a\nb.csv" {
		t.Fatalf("good files: %v %v %+v", e, string(res.JSON), res.Files)
	}
	// What a walk can produce at its bounds: 16 names deep, each 255 bytes
	// escaped, and names that share a start without being a directory.
	deep := strings.Repeat("d/", MaxOutputDepth-1) + "f"
	long := strings.Repeat(`\xff`, 255) + "/" + strings.Repeat("b", 255)
	if _, e := interpretAnswer(frame(wire.File{Name: deep}, wire.File{Name: long}), lim, false); e != nil {
		t.Fatalf("files at the bounds: %v", e)
	}
	if _, e := interpretAnswer(frame(wire.File{Name: "a.txt"}, wire.File{Name: "a/b"}), lim, false); e != nil {
		t.Fatalf("a name that starts another: %v", e)
	}
}

// Images in a runner's answer are hostile bytes too: only when asked for,
// within the caps, and each a PNG; anything else is result_corrupted.
func TestAnswerImagesChecked(t *testing.T) {
	// A signature and IHDR of 640×480 pixels.
	png := append(append([]byte(nil), pngHeader...), 0, 0, 2, 128, 0, 0, 1, 224)
	img := wire.Image{MediaType: "image/png", Data: png}
	// The same header claiming 65535×65535 pixels: a decompression bomb.
	huge := wire.Image{MediaType: "image/png", Data: append(append([]byte(nil), pngHeader...), 0, 0, 255, 255, 0, 0, 255, 255)}
	empty := wire.Image{MediaType: "image/png", Data: append(append([]byte(nil), pngHeader...), 0, 0, 0, 0, 0, 0, 1, 0)}
	frame := func(r wire.Result) wire.Frame {
		body, err := wire.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return wire.Frame{RequestID: 1, Type: wire.TypeResult, Version: wire.Version, Body: body}
	}
	r, e := interpretAnswer(frame(wire.Result{JSON: []byte("1"), Images: []wire.Image{img, img}, ImagesTruncated: true}), DefaultLimits(), true)
	if e != nil || len(r.Images) != 2 || !r.ImagesTruncated || string(r.JSON) != "1" {
		t.Fatalf("good images: got %+v, %+v", r, e)
	}
	many := make([]wire.Image, MaxImages+1)
	for i := range many {
		many[i] = img
	}
	big := wire.Image{MediaType: "image/png", Data: append(append([]byte(nil), png...), make([]byte, MaxImageBytes)...)}
	for name, c := range map[string]struct {
		r     wire.Result
		asked bool
	}{
		"not asked":      {wire.Result{JSON: []byte("1"), Images: []wire.Image{img}}, false},
		"truncated only": {wire.Result{JSON: []byte("1"), ImagesTruncated: true}, false},
		"too many":       {wire.Result{JSON: []byte("1"), Images: many}, true},
		"too large":      {wire.Result{JSON: []byte("1"), Images: []wire.Image{big}}, true},
		"not png":        {wire.Result{JSON: []byte("1"), Images: []wire.Image{{MediaType: "image/png", Data: []byte("GIF89a")}}}, true},
		"other type":     {wire.Result{JSON: []byte("1"), Images: []wire.Image{{MediaType: "image/svg+xml", Data: png}}}, true},
		"pixel bomb":     {wire.Result{JSON: []byte("1"), Images: []wire.Image{huge}}, true},
		"zero width":     {wire.Result{JSON: []byte("1"), Images: []wire.Image{empty}}, true},
		"cut header":     {wire.Result{JSON: []byte("1"), Images: []wire.Image{{MediaType: "image/png", Data: pngHeader}}}, true},
	} {
		if _, e := interpretAnswer(frame(c.r), DefaultLimits(), c.asked); e == nil || e.Type != wire.ErrResultCorrupted {
			t.Errorf("%s: got %+v, want result_corrupted", name, e)
		}
	}
}
