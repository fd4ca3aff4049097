package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds what is read of one answer or one NDJSON line: the
// largest answer the service gives (output caps, result cap, images, output
// files, base64 and JSON escaping) is well below it, and a server that
// sends more is not one to trust with memory.
const maxAnswer = 256 << 20

// httpClient is the client of the URL mode. The service bounds each
// execution itself (timeout plus queue wait plus grace), so there is no
// overall deadline here, only on connecting and on the headers arriving;
// Ctrl-C closes the connection, which cancels the execution.
func httpClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second}).DialContext,
		// A streamed answer's headers wait for the first output chunk,
		// a whole one's for the end: neither gets a header timeout.
		TLSHandshakeTimeout: 10 * time.Second,
	}}
}

// endpoint joins base (the --url) and a path.
func endpoint(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usagef("--url %q: want http://host[:port] or https://host", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String(), nil
}

// unreachable is the answer for a request that got no HTTP answer.
func unreachable(err error) *response {
	return failure("unavailable", "cannot reach the service: %v", err)
}

// runHTTP sends r to POST /execute asking for the NDJSON stream, prints the
// output as it comes and returns the final answer.
func runHTTP(ctx context.Context, base, key string, r *request, p *printer) (*response, error) {
	u, err := endpoint(base, "/execute")
	if err != nil {
		return nil, err
	}
	body, err := r.httpBody()
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, usagef("--url: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/x-ndjson")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return unreachable(err), nil
	}
	defer resp.Body.Close()
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	switch {
	case ct == "application/x-ndjson" && resp.StatusCode == http.StatusOK:
		return readStream(ctx, resp.Body, p)
	case ct == "application/json":
		// Refused before the execution ran (or a server without
		// streaming): one JSON answer.
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			return failure("internal", "reading the answer (HTTP %d): %v", resp.StatusCode, err), nil
		}
		return decodeAnswer(resp.StatusCode, b), nil
	default:
		// Not the service's JSON: a proxy's page, or fasthttp's plain
		// 503 past the connection cap.
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		t := "internal"
		switch resp.StatusCode {
		case http.StatusServiceUnavailable, http.StatusBadGateway, http.StatusGatewayTimeout:
			t = "unavailable"
		case http.StatusNotFound:
			t = "not_found"
		}
		return failure(t, "HTTP %s (%s): %s", resp.Status, resp.Header.Get("Content-Type"), strings.TrimSpace(string(b))), nil
	}
}

// decodeAnswer reads a whole JSON answer with its HTTP status.
func decodeAnswer(status int, b []byte) *response {
	if len(b) > maxAnswer {
		return failure("internal", "the answer is larger than %d bytes", maxAnswer)
	}
	var r response
	if err := json.Unmarshal(b, &r); err != nil {
		return failure("internal", "the answer (HTTP %d) is not the service's JSON: %v", status, err)
	}
	if status != http.StatusOK && r.Error == nil {
		return failure("internal", "HTTP %d without an error object", status)
	}
	if status == http.StatusOK && r.Error == nil && r.Result == nil {
		return failure("internal", "HTTP 200 without a result")
	}
	return &r
}

// streamLine is one NDJSON line: an output chunk or the final one.
type streamLine struct {
	Event    string          `json:"event"`
	Data     string          `json:"data"`
	Status   int             `json:"status"`
	Response json.RawMessage `json:"response"`
}

// readStream prints the stream's chunks as they come and returns its final
// answer. A stream that ends without its done line was cut off: internal,
// as gateway/API.md says.
func readStream(ctx context.Context, body io.Reader, p *printer) (*response, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	for {
		line, err := readLine(br)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if errors.Is(err, io.EOF) {
				return failure("internal", "the stream ended without its done line"), nil
			}
			return failure("internal", "reading the stream: %v", err), nil
		}
		var l streamLine
		if err := json.Unmarshal(line, &l); err != nil {
			return failure("internal", "a stream line is not JSON: %v", err), nil
		}
		switch l.Event {
		case "stdout":
			p.out([]byte(l.Data))
		case "stderr":
			p.err([]byte(l.Data))
		case "done":
			r := decodeAnswer(l.Status, l.Response)
			return r, nil
		default:
			// Later versions may add events; clients ignore them.
		}
	}
}

// readLine reads one '\n'-terminated line of at most maxAnswer bytes.
func readLine(br *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > maxAnswer {
			return nil, fmt.Errorf("a line longer than %d bytes", maxAnswer)
		}
		switch {
		case err == nil:
			return line, nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return nil, io.ErrUnexpectedEOF
		default:
			return nil, err
		}
	}
}

// healthHTTP is GET /health: its JSON and whether it said healthy.
func healthHTTP(ctx context.Context, base string) ([]byte, int, error) {
	u, err := endpoint(base, "/health")
	if err != nil {
		return nil, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, 0, usagef("--url: %v", err)
	}
	resp, err := httpClient().Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, 0, err
	}
	if !json.Valid(b) {
		return nil, 0, fmt.Errorf("HTTP %s: not JSON: %.200q", resp.Status, b)
	}
	return b, resp.StatusCode, nil
}
