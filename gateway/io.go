package gateway

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/limits"
	"github.com/python-executor/python-executor/wire"
)

// ioBodyRoom is how much the request body limit grows so that args and
// files up to their default caps fit: the args' JSON text, the files'
// contents in base64 (4 bytes per 3), and room for each file's name and
// keys. The supervisor enforces the caps themselves; the script and the
// rest of the body stay within -max-body-bytes (checked after parsing).
func ioBodyRoom() int {
	d := limits.Defaults()
	return int(d.ArgsBytes + (d.FilesInBytes+2)/3*4 + int64(d.FilesInCount)*2048)
}

// parseArgs checks the "args" field: a JSON object, passed on as its text.
func parseArgs(raw json.RawMessage) ([]byte, *apiError) {
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '{' {
		return nil, &apiError{Type: wire.ErrInvalidRequest, Message: `field "args" must be a JSON object`}
	}
	return append([]byte(nil), raw...), nil
}

// inputFile is one element of the "files" field.
type inputFile struct {
	Name     *string `json:"name"`
	Content  *string `json:"content"`
	Encoding *string `json:"encoding"`
}

// parseFiles checks the "files" field: an array of {name, content,
// encoding}, names valid (wire.CheckFiles), content text ("utf-8", the
// default) or standard base64 ("base64"). Unknown keys are refused. The
// error names the element at fault.
func parseFiles(raw json.RawMessage) ([]wire.File, *apiError) {
	bad := func(format string, a ...any) *apiError {
		return invalidRequest(fmt.Sprintf(format, a...))
	}
	if t := bytes.TrimLeft(raw, " \t\r\n"); len(t) == 0 || t[0] != '[' {
		return nil, bad(`field "files" must be an array`)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, bad(`field "files" must be an array`)
	}
	files := make([]wire.File, 0, len(elems))
	for i, el := range elems {
		var f inputFile
		dec := json.NewDecoder(bytes.NewReader(el))
		dec.DisallowUnknownFields()
		if t := bytes.TrimLeft(el, " \t\r\n"); len(t) == 0 || t[0] != '{' || dec.Decode(&f) != nil {
			return nil, bad(`files[%d] must be an object with "name", "content" and optionally "encoding" (strings), and nothing else`, i)
		}
		if f.Name == nil || f.Content == nil {
			return nil, bad(`files[%d] needs "name" and "content"`, i)
		}
		var data []byte
		switch {
		case f.Encoding != nil && *f.Encoding != "utf-8" && *f.Encoding != "base64":
			return nil, bad(`files[%d].encoding must be "utf-8" or "base64", not %s`, i, wire.QuoteName(*f.Encoding))
		case f.Encoding != nil && *f.Encoding == "base64":
			d, err := base64.StdEncoding.Strict().DecodeString(*f.Content)
			if err != nil {
				return nil, bad(`files[%d].content is not valid base64: %v`, i, err)
			}
			data = d
		default:
			data = []byte(*f.Content)
		}
		files = append(files, wire.File{Name: *f.Name, Data: data})
	}
	if err := wire.CheckFiles(files); err != nil {
		return nil, invalidRequest(err.Error())
	}
	return files, nil
}

// appendFiles appends the output files as the response's "files" array:
// [{"name", "size", "media_type", "content" (base64)}], or with "uri" (the
// file as an MCP resource, sent beside) in place of "content" when byURI.
func appendFiles(b []byte, out *client.Outcome, byURI bool) []byte {
	b = append(b, `,"files":[`...)
	for i, f := range out.Files {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"name":`...)
		b = appendString(b, []byte(f.Name))
		b = append(b, `,"size":`...)
		b = fmt.Appendf(b, "%d", len(f.Data))
		b = append(b, `,"media_type":`...)
		b = appendString(b, []byte(wire.MediaType(f.Name)))
		if byURI {
			b = append(b, `,"uri":`...)
			b = appendString(b, []byte(outputURI(f.Name)))
			b = append(b, '}')
			continue
		}
		b = append(b, `,"content":"`...)
		b = base64.StdEncoding.AppendEncode(b, f.Data)
		b = append(b, `"}`...)
	}
	return append(b, ']')
}
