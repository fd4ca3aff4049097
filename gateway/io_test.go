package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

func TestParseArgsAndFiles(t *testing.T) {
	req, e := parseExecute([]byte(`{"script": "x", "args": {"a": [1, {"b": null}]}, "files": [{"name": "d/a.csv", "content": "1,2"}, {"name": "b", "content": "AP8=", "encoding": "base64"}]}`), 30*time.Second, DefaultMaxBodyBytes)
	if e != nil {
		t.Fatal(e.Message)
	}
	if string(req.Args) != `{"a": [1, {"b": null}]}` || len(req.Files) != 2 || string(req.Files[0].Data) != "1,2" || string(req.Files[1].Data) != "\x00\xff" || req.Files[0].Name != "d/a.csv" {
		t.Fatalf("got %+v", req)
	}
	for body, msg := range map[string]string{
		`{"script": "x", "args": [1]}`:                                                             `field "args" must be a JSON object`,
		`{"script": "x", "args": null}`:                                                            `field "args" must be a JSON object`,
		`{"script": "x", "files": {}}`:                                                             `field "files" must be an array`,
		`{"script": "x", "files": [1]}`:                                                            `files[0] must be an object`,
		`{"script": "x", "files": [{"name": "a"}]}`:                                                `files[0] needs "name" and "content"`,
		`{"script": "x", "files": [{"name": "a", "content": "x", "extra": 1}]}`:                    `files[0] must be an object`,
		`{"script": "x", "files": [{"name": "a", "content": "x", "encoding": "utf-16"}]}`:          `files[0].encoding must be "utf-8" or "base64", not "utf-16"`,
		`{"script": "x", "files": [{"name": "a", "content": "A", "encoding": "base64"}]}`:          `files[0].content is not valid base64`,
		`{"script": "x", "files": [{"name": "../a", "content": ""}]}`:                              `file name "../a" has a ".." component`,
		`{"script": "x", "files": [{"name": "/a", "content": ""}]}`:                                `file name "/a" is absolute`,
		`{"script": "x", "files": [{"name": "a", "content": ""}, {"name": "a", "content": ""}]}`:   `file name "a" is given twice`,
		`{"script": "x", "files": [{"name": "a", "content": ""}, {"name": "a/b", "content": ""}]}`: `file name "a" is also a directory of "a/b"`,
		`{"script": "x", "files": [{"name": "a\u0000b", "content": ""}]}`:                          `holds a control character`,
	} {
		_, e := parseExecute([]byte(body), 30*time.Second, DefaultMaxBodyBytes)
		if e == nil || e.Type != wire.ErrInvalidRequest || !strings.Contains(e.Message, msg) {
			t.Errorf("%s: got %+v, want invalid_request containing %q", body, e, msg)
		}
	}
}

func TestSuccessBodyWithFiles(t *testing.T) {
	out := &client.Outcome{Result: []byte("1"), Files: []wire.File{{Name: "a\n.csv", Data: []byte{0, 1}}, {Name: "p.PNG", Data: nil}}, FilesTruncated: true}
	b := successBody(out)
	var v struct {
		Files []struct {
			Name, MediaType, Content string
			Size                     int
		}
		Truncated map[string]bool
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	if !strings.Contains(string(b), `"media_type":"text/csv"`) || len(v.Files) != 2 || v.Files[0].Name != "a\n.csv" || v.Files[0].Size != 2 || v.Files[0].Content != "AAE=" || !v.Truncated["files"] || !strings.Contains(string(b), `"media_type":"image/png"`) {
		t.Fatalf("body %s", b)
	}
	// Without files the body is the seed's shape.
	if b := successBody(&client.Outcome{Result: []byte("1")}); strings.Contains(string(b), "files") {
		t.Fatalf("body %s", b)
	}
	if statusFor(wire.ErrInvalidArgs) != 400 {
		t.Fatal("invalid_args is not a 400")
	}
}

// An answer with both output files and images (features io and images) has
// both truncation marks in "truncated" and both lists after it, in that order.
func TestSuccessBodyWithFilesAndImages(t *testing.T) {
	out := &client.Outcome{
		Result: []byte("1"),
		Files:  []wire.File{{Name: "a.txt", Data: []byte("x")}}, FilesTruncated: true,
		Images: []wire.Image{{MediaType: "image/png", Data: []byte("p")}}, ImagesTruncated: true,
	}
	b := string(successBody(out))
	want := `"truncated":{"stdout":false,"stderr":false,"files":true,"images":true},"files":[{"name":"a.txt","size":1,"media_type":"text/plain","content":"eA=="}],"images":[{"media_type":"image/png","data":"cA=="}]}`
	if !strings.HasSuffix(b, want) {
		t.Fatalf("body %s\nwant suffix %s", b, want)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(b), &v); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
}

// The body limit counts everything but the args and files fields (their room
// is on top), and a body over it that does not parse is too large, not
// malformed: one decode decides both.
func TestParseExecuteBodyLimit(t *testing.T) {
	const max = 100
	big := strings.Repeat("x", 200)
	for _, tc := range []struct {
		body string
		want wire.ErrorType // "" = accepted
	}{
		{`{"script": "` + big + `"}`, errBodyTooLarge},
		{`{"script": "x", "args": {"a": "` + big + `"}}`, ""},
		{`{"script": "x", "files": [{"name": "a", "content": "` + big + `"}]}`, ""},
		{`{"script": "x", "args": {"a": "` + big + `"}, "zzz": "` + big + `"}`, errBodyTooLarge},
		{`{"script": "` + big, errBodyTooLarge},
		{`{"script": "x"`, wire.ErrInvalidRequest},
		{`{"script": "x", "zzz": 1}`, wire.ErrInvalidRequest},
	} {
		_, e := parseExecute([]byte(tc.body), 30*time.Second, max)
		switch {
		case tc.want == "" && e != nil:
			t.Errorf("%.60s: refused: %+v", tc.body, e)
		case tc.want != "" && (e == nil || e.Type != tc.want):
			t.Errorf("%.60s: got %+v, want %s", tc.body, e, tc.want)
		case e != nil && e.Type == errBodyTooLarge && e.Message != "request body exceeds 100 bytes":
			t.Errorf("%.60s: message %q", tc.body, e.Message)
		}
	}
}
