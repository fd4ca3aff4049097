package client_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// Stream shows a script's output as it is written, then its outcome. (The
// supervisor here is a stand-in inside the example, so that it runs as a
// test anywhere; against the real one only SocketPath differs.)
func ExampleClient_Stream() {
	socket, stop := exampleSupervisor()
	defer stop()

	c := client.New(client.Config{
		SocketPath: socket,
		ServerUID:  os.Getuid(), // the stand-in runs as this process; the real supervisor as root (0)
	})
	defer c.Close()

	req := wire.Execute{Script: "import time\ndef main():\n    print('step 1')\n    time.sleep(1)\n    print('step 2')\n    return {'answer': 42}\n"}
	for ev, err := range c.Stream(context.Background(), req) {
		if err != nil {
			fmt.Println("transport failure:", err)
			return
		}
		switch ev.Type {
		case wire.TypeStdout, wire.TypeStderr:
			fmt.Printf("%s: %q\n", ev.Type, ev.Data)
		case wire.TypeDone:
			if ev.Outcome.Err != nil {
				fmt.Println("failed:", ev.Outcome.Err.Type, ev.Outcome.Err.Message)
				return
			}
			fmt.Printf("result: %s\n", ev.Outcome.Result)
		}
	}
	// Output:
	// stdout: "step 1\n"
	// stderr: "a warning\n"
	// stdout: "step 2\n"
	// result: {"answer":42}
}

// exampleSupervisor serves one execution on a fresh socket the way the
// supervisor would answer the example's script.
func exampleSupervisor() (socket string, stop func()) {
	dir, err := os.MkdirTemp("", "client-example")
	if err != nil {
		panic(err)
	}
	socket = filepath.Join(dir, "s")
	ln, err := net.Listen("unix", socket)
	if err != nil {
		panic(err)
	}
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		br := bufio.NewReader(nc)
		send := func(id uint32, t wire.Type, v any) {
			f, err := wire.NewFrame(id, t, v)
			if err == nil {
				_, _ = nc.Write(wire.AppendFrame(nil, f))
			}
		}
		if _, err := wire.ReadFrame(br, wire.DefaultMaxFrame); err != nil {
			return
		}
		send(0, wire.TypeHello, wire.Hello{Version: int(wire.Version), Software: "example"})
		f, err := wire.ReadFrame(br, wire.DefaultMaxFrame)
		if err != nil || f.Type != wire.TypeExecute {
			return
		}
		send(f.RequestID, wire.TypeStdout, wire.Chunk{Data: []byte("step 1\n")})
		send(f.RequestID, wire.TypeStderr, wire.Chunk{Data: []byte("a warning\n")})
		send(f.RequestID, wire.TypeStdout, wire.Chunk{Data: []byte("step 2\n")})
		send(f.RequestID, wire.TypeResult, wire.Result{JSON: []byte(`{"answer":42}`)})
		send(f.RequestID, wire.TypeDone, wire.Done{ExitReason: wire.ExitOK})
		// Wait for the client to hang up.
		_, _ = br.ReadByte()
	}()
	return socket, func() {
		ln.Close()
		os.RemoveAll(dir)
	}
}
