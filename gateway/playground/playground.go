// Package playground is the gateway's one web page, served at GET /: a
// Python editor (CodeMirror 6) that runs scripts through the gateway's own
// POST /execute with the NDJSON stream, shows the output as it comes, the
// result, errors with their traceback, images and output files.
//
// Everything the page needs is embedded in the binary and inlined into one
// HTML document, so it works offline and makes no request but to the
// gateway (its Content-Security-Policy allows nothing else). The script is
// assets/playground.js, generated from web/ by web/build.sh (`make
// playground`) and committed, so `go build` needs no npm.
package playground

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	_ "embed"

	"github.com/python-executor/python-executor/limits"
)

//go:embed assets/index.html
var indexHTML []byte

//go:embed assets/playground.js
var script []byte

// Page is the rendered page, ready to serve.
type Page struct {
	// HTML is the whole document; Gzip the same, gzip-compressed.
	HTML, Gzip []byte
	// CSP is its Content-Security-Policy: the one inline script by its
	// hash, connections to the page's own origin only.
	CSP string
	// ETag names this build of the page.
	ETag string
}

// LimitField is one optional limit field of POST /execute as the page
// offers it.
type LimitField struct {
	Field       string `json:"field"`
	Unit        string `json:"unit"`
	Integer     bool   `json:"integer"`
	Placeholder string `json:"placeholder"`
	Doc         string `json:"doc"`
}

// LimitFields are the request's limit fields, from the limit table, in its
// order; the placeholder shows the table's default (an operator's flags may
// set other defaults, which the page cannot know).
func LimitFields() []LimitField {
	var out []LimitField
	for _, l := range limits.Table {
		if l.HTTP == "" {
			continue
		}
		f := LimitField{Field: l.HTTP, Doc: l.Doc}
		switch l.Unit {
		case limits.Duration:
			f.Unit = "s"
			f.Placeholder = "default " + strconv.FormatFloat(time.Duration(l.Default).Seconds(), 'f', -1, 64)
		case limits.Bytes:
			f.Integer = true
			switch l.HTTPScale {
			case 1 << 20:
				f.Unit = "MiB"
			case 1 << 10:
				f.Unit = "KiB"
			case 1:
				f.Unit = "bytes"
			default:
				f.Unit = "× " + strconv.FormatInt(l.HTTPScale, 10) + " bytes"
			}
			f.Placeholder = "default " + strconv.FormatInt(l.Default/l.HTTPScale, 10)
		default:
			f.Integer = true
			f.Placeholder = "default " + strconv.FormatInt(l.Default/max(l.HTTPScale, 1), 10)
		}
		out = append(out, f)
	}
	return out
}

const (
	limitsMarker = "<!--limit-fields-->"
	scriptMarker = "<!--script-->"
)

// Render builds the page from the embedded assets.
func Render() (*Page, error) {
	html := string(indexHTML)
	if strings.Count(html, limitsMarker) != 1 || strings.Count(html, scriptMarker) != 1 {
		return nil, fmt.Errorf("playground: index.html must hold %s and %s once each", limitsMarker, scriptMarker)
	}
	// The bundle is checked for these when it is built; checked again
	// here because inlining it depends on it.
	if bytes.Contains(bytes.ToLower(script), []byte("</script")) || bytes.Contains(script, []byte("<!--")) {
		return nil, fmt.Errorf("playground: the script bundle contains </script or <!-- and cannot be inlined")
	}
	// json.Marshal escapes <, > and &, so the data cannot end its element.
	fields, err := json.Marshal(LimitFields())
	if err != nil {
		return nil, err
	}
	html = strings.Replace(html, limitsMarker, string(fields), 1)
	html = strings.Replace(html, scriptMarker, string(script), 1)

	sum := sha256.Sum256(script)
	p := &Page{
		HTML: []byte(html),
		CSP: "default-src 'none'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; " +
			// The page's own <style> and the editor's generated styles.
			"style-src 'unsafe-inline'; img-src data: blob:; connect-src 'self'; " +
			"base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	}
	page := sha256.Sum256(p.HTML)
	p.ETag = `"` + base64.RawURLEncoding.EncodeToString(page[:12]) + `"`
	var gz bytes.Buffer
	w, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	w.Write(p.HTML)
	if err := w.Close(); err != nil {
		return nil, err
	}
	p.Gzip = gz.Bytes()
	return p, nil
}
