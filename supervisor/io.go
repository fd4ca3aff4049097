package supervisor

import (
	"bytes"
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/python-executor/python-executor/internal/engine"
	"github.com/python-executor/python-executor/wire"
)

// checkIO checks a request's args and files (wire.FeatureIO) against the
// resolved limits. The gateway checks the same; a client of the socket
// other than the gateway gets the same answers. Every refusal is the
// request's fault (invalid_request).
func checkIO(req wire.Execute, lim engine.LimitSet, agreed bool) *wire.Error {
	bad := func(format string, a ...any) *wire.Error {
		return &wire.Error{Type: wire.ErrInvalidRequest, Message: fmt.Sprintf(format, a...)}
	}
	if (req.Args != nil || len(req.Files) > 0) && !agreed {
		return bad("args and files need the %q protocol feature, which this connection did not ask for", wire.FeatureIO)
	}
	if req.Args != nil {
		if int64(len(req.Args)) > lim.ArgsBytes {
			return bad("args are %d bytes of JSON, over the limit of %d bytes", len(req.Args), lim.ArgsBytes)
		}
		if t := bytes.TrimLeft(req.Args, " \t\r\n"); !utf8.Valid(req.Args) || !json.Valid(req.Args) || len(t) == 0 || t[0] != '{' {
			return bad("args must be the JSON text of an object")
		}
	}
	if len(req.Files) > lim.FilesInCount {
		return bad("%d files, over the limit of %d", len(req.Files), lim.FilesInCount)
	}
	var total int64
	for _, f := range req.Files {
		total += int64(len(f.Data))
	}
	if total > lim.FilesInBytes {
		return bad("the files hold %d bytes, over the limit of %d bytes", total, lim.FilesInBytes)
	}
	if err := wire.CheckFiles(req.Files); err != nil {
		return bad("%v", err)
	}
	return nil
}
