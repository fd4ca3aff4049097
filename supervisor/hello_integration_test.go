package supervisor_test

import (
	"bufio"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/python-executor/python-executor/wire"
)

// An old-style client (a hello without features, as built before features
// existed) runs a script on the real supervisor binary, speaking raw frames:
// the base protocol is unchanged for it.
func TestOldClientRunsScript(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		inst := startSupervisor(t, engine)
		type oldHello struct {
			Version  int    `msgpack:"version"`
			Software string `msgpack:"software"`
		}
		c, err := net.Dial("unix", inst.Socket)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(90 * time.Second))
		f, _ := wire.NewFrame(0, wire.TypeHello, oldHello{1, "old-client"})
		if err := wire.WriteFrame(c, f); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		f, err = wire.ReadFrame(br, wire.DefaultMaxFrame)
		if err != nil || f.Type != wire.TypeHello {
			t.Fatalf("answer to an old hello: %v frame, %v", f.Type, err)
		}
		var answer map[string]any
		if err := wire.Unmarshal(f.Body, &answer); err != nil {
			t.Fatal(err)
		}
		if _, ok := answer["features"]; ok || answer["version"] != int8(1) {
			t.Fatalf("answer to an old hello = %#v, want version 1 and no features key", answer)
		}
		f, _ = wire.NewFrame(9, wire.TypeExecute, wire.Execute{Script: "def main():\n    print('hi')\n    return 5\n"})
		if err := wire.WriteFrame(c, f); err != nil {
			t.Fatal(err)
		}
		// Stdout may come in any number of chunks: joined before the
		// result.
		var got []string
		stdout := ""
		for {
			f, err := wire.ReadFrame(br, wire.DefaultMaxFrame)
			if err != nil {
				t.Fatalf("after %v: %v", got, err)
			}
			if f.RequestID != 9 {
				t.Fatalf("%s frame on request %d", f.Type, f.RequestID)
			}
			var m map[string]any
			if err := wire.Unmarshal(f.Body, &m); err != nil {
				t.Fatal(err)
			}
			switch f.Type {
			case wire.TypeStdout:
				stdout += string(m["data"].([]byte))
			case wire.TypeResult:
				got = append(got, "stdout:"+stdout, "result:"+string(m["json"].([]byte)))
			default:
				got = append(got, f.Type.String())
			}
			if f.Type == wire.TypeDone {
				break
			}
		}
		if want := []string{"stdout:hi\n", "result:5", "done"}; !reflect.DeepEqual(got, want) {
			t.Fatalf("frames = %q, want %q", got, want)
		}
	})
}
