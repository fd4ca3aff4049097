package supervisor

import (
	"bufio"
	"context"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// namedEngine is an engine that only has a name: the hello tests run no
// executions, they ask for status to prove the connection works.
type namedEngine struct{ Engine }

func (namedEngine) Name() string { return "hello-test" }

// startHelloServer serves an in-process Server offering offered on a socket
// in a temporary directory. The peer check lets root in, so it needs root,
// as the rest of this package's tests.
func startHelloServer(t *testing.T, offered ...string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the supervisor's peer check admits root only: run the tests as root")
	}
	logger, _ := logtest.NewNullLogger()
	srv := NewServer(Config{}, namedEngine{}, "full", "none", logrus.NewEntry(logger))
	srv.features = wire.NewFeatureSet(offered...)
	return serveInProcess(t, srv)
}

// serveInProcess serves srv on a socket in a temporary directory until the
// test ends, and returns the socket's path.
func serveInProcess(t *testing.T, srv *Server) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// rawHello sends hello as the first frame on a new connection and returns
// the supervisor's answer decoded as a plain map (to see which keys it has),
// and the connection, ready for the frames after the hello.
func rawHello(t *testing.T, path string, hello any) (map[string]any, net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	f, err := wire.NewFrame(0, wire.TypeHello, hello)
	if err != nil {
		t.Fatal(err)
	}
	if err := wire.WriteFrame(c, f); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	f, err = wire.ReadFrame(br, wire.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("read the supervisor's hello: %v", err)
	}
	if f.Type != wire.TypeHello || f.RequestID != 0 || f.Version != wire.Version {
		t.Fatalf("answer to hello: %s frame, request %d, version %d: %x", f.Type, f.RequestID, f.Version, f.Body)
	}
	var m map[string]any
	if err := wire.Unmarshal(f.Body, &m); err != nil {
		t.Fatal(err)
	}
	return m, c, br
}

// wantStatus checks that the connection is usable after the hello.
func wantStatus(t *testing.T, c net.Conn, br *bufio.Reader) {
	t.Helper()
	f, _ := wire.NewFrame(0, wire.TypeStatusRequest, wire.Empty{})
	if err := wire.WriteFrame(c, f); err != nil {
		t.Fatal(err)
	}
	f, err := wire.ReadFrame(br, wire.DefaultMaxFrame)
	if err != nil {
		t.Fatalf("status after hello: %v", err)
	}
	var st wire.Status
	if f.Type != wire.TypeStatus || wire.Unmarshal(f.Body, &st) != nil || st.Engine != "hello-test" {
		t.Fatalf("status after hello: %s frame %x", f.Type, f.Body)
	}
}

func TestHelloFeatureNegotiation(t *testing.T) {
	// oldHello is the hello of a client from before features.
	type oldHello struct {
		Version  int    `msgpack:"version"`
		Software string `msgpack:"software"`
	}
	for _, tc := range []struct {
		name    string
		offered []string // by the server
		hello   any      // the client's
		want    any      // the answer's features key; nil = absent
	}{
		{"old client, server without features", nil, oldHello{1, "old"}, nil},
		{"old client, server with features", []string{"files", "stream_events"}, oldHello{1, "old"}, nil},
		{"client asks, server offers nothing", nil, wire.Hello{Version: 1, Features: []string{"files"}}, nil},
		{"nothing in common", []string{"files"}, wire.Hello{Version: 1, Features: []string{"images", "teleport"}}, nil},
		{"the intersection", []string{"files", "stream_events"}, wire.Hello{Version: 1, Features: []string{"teleport", "stream_events", "images"}}, []any{"stream_events"}},
		{"all offered", []string{"files", "stream_events"}, wire.Hello{Version: 1, Features: []string{"stream_events", "files"}}, []any{"files", "stream_events"}},
		{
			"unknown keys in the client's hello are ignored",
			[]string{"files"},
			map[string]any{"version": 1, "software": "future", "features": []string{"files"}, "future_key": map[string]any{"x": []int{1}}},
			[]any{"files"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := startHelloServer(t, tc.offered...)
			answer, c, br := rawHello(t, path, tc.hello)
			got, ok := answer["features"]
			if tc.want == nil && ok {
				t.Fatalf("answer has features %v, want no features key: %v", got, answer)
			}
			if tc.want != nil && !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("answer features = %#v, want %#v", got, tc.want)
			}
			if answer["software"] != Software {
				t.Fatalf("answer = %v", answer)
			}
			wantStatus(t, c, br)
		})
	}
}

// The Go client against a server that offers nothing and one that offers
// part of what it asks for.
func TestClientFeaturesAgainstServer(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offered []string
		want    []string
	}{
		{"server offers nothing", nil, nil},
		{"server offers part", []string{"files", "images"}, []string{"files"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := startHelloServer(t, tc.offered...)
			c := client.New(client.Config{SocketPath: path, Features: []string{"stream_events", "files"}})
			defer c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			set, err := c.Features(ctx)
			if err != nil {
				t.Fatalf("Features() = %v", err)
			}
			if !reflect.DeepEqual(set.Names(), tc.want) {
				t.Fatalf("Features() = %q, want %q", set.Names(), tc.want)
			}
			if st, err := c.Status(ctx); err != nil || st.Engine != "hello-test" {
				t.Fatalf("Status() = %+v, %v", st, err)
			}
		})
	}
}

// Naming an internal client asks NSS, which can be slow (LDAP and its
// timeouts); a connection whose naming hangs must not hold up the next
// connection's accept, nor its answers.
func TestSlowClientNamingHoldsUpOnlyItsConnection(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the supervisor's peer check admits root only: run the tests as root")
	}
	logger, _ := logtest.NewNullLogger()
	srv := NewServer(Config{}, namedEngine{}, "full", "none", logrus.NewEntry(logger))
	first, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	srv.nameClient = func(uid, gw int) string {
		if calls.Add(1) == 1 {
			close(first)
			<-release
		}
		return clientName(uid, gw)
	}
	path := serveInProcess(t, srv)
	defer close(release)

	slow, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	select {
	case <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first connection was never named")
	}
	// rawHello times out after 10 s: before, the accept loop was stuck in
	// the first connection's naming and never took this one.
	_, c, br := rawHello(t, path, wire.Hello{Version: 1})
	wantStatus(t, c, br)
}
