package client_test

import (
	"bytes"
	"context"
	"fmt"
	"image/png"
	"log"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// Stream shows a script's output as it is written, then its outcome: the
// loop prints "step 1" while the script still sleeps. (Each write here is
// one chunk; a chunk is whatever one read of the script's pipe got, so
// output written in several pieces may also arrive in several.)
func ExampleClient_Stream() {
	c := client.New(client.Config{SocketPath: supervisorSocket}) // e.g. /run/python-executor/supervisor.sock
	defer c.Close()

	req := wire.Execute{Script: `
import sys, time
def main():
    sys.stdout.write("step 1\n")
    time.sleep(0.3)
    sys.stderr.write("a warning\n")
    time.sleep(0.3)
    sys.stdout.write("step 2\n")
    return {"answer": 42}
`}
	for ev, err := range c.Stream(context.Background(), req) {
		if err != nil {
			log.Fatal("transport failure: ", err) // the supervisor could not be reached
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

// Arguments and files (the "io" feature): main(**args) gets the decoded
// JSON values, the files are in the working directory before the script
// is imported, and what the script leaves in output/ comes back. Arguments
// main cannot take are the request's fault, invalid_args, before main runs.
func ExampleClient_Execute_argsAndFiles() {
	c := client.New(client.Config{
		SocketPath: supervisorSocket,
		Features:   []string{wire.FeatureIO},
	})
	defer c.Close()
	script := `
import os, pandas as pd
def main(column, factor=1):
    df = pd.read_csv("data.csv")
    os.makedirs("output", exist_ok=True)
    (df[[column]] * factor).to_csv("output/scaled.csv", index=False)
    return int(df[column].sum())
`
	files := []wire.File{{Name: "data.csv", Data: []byte("a,b\n1,2\n3,4\n")}}
	for _, args := range []string{`{"column": "b", "factor": 10}`, `{"colum": "b"}`} {
		out, err := c.Execute(context.Background(), wire.Execute{Script: script, Args: []byte(args), Files: files}, nil)
		if err != nil {
			log.Fatal(err) // the supervisor could not be reached
		}
		if out.Err != nil {
			fmt.Printf("%s: %s\n", out.Err.Type, out.Err.Message)
			continue
		}
		fmt.Printf("result %s\n", out.Result)
		for _, f := range out.Files {
			fmt.Printf("%s: %q\n", f.Name, f.Data)
		}
		if out.FilesTruncated {
			fmt.Println("some output files were left out by a cap")
		}
	}
	// Output:
	// result 6
	// scaled.csv: "b\n20\n40\n"
	// invalid_args: main() has no parameter "colum"
}

// Figures a script leaves open when main() returns come back as PNGs when
// the client asks for wire.FeatureImages.
func ExampleOutcome_images() {
	c := client.New(client.Config{
		SocketPath: supervisorSocket,
		Features:   []string{wire.FeatureImages},
	})
	defer c.Close()
	script := `
import pandas as pd
def main():
    pd.DataFrame({"y": [1, 4, 9]}).plot(title="squares")
    return "plotted"
`
	out, err := c.Execute(context.Background(), wire.Execute{Script: script}, nil)
	if err != nil {
		log.Fatal(err)
	}
	if out.Err != nil {
		log.Fatalf("%s: %s", out.Err.Type, out.Err.Message)
	}
	fmt.Printf("result %s, %d image(s)\n", out.Result, len(out.Images))
	for i, im := range out.Images {
		// im.Data is the PNG file; os.WriteFile("figure.png", im.Data, 0o644) saves it.
		cfg, err := png.DecodeConfig(bytes.NewReader(im.Data))
		if err != nil {
			log.Fatal(err)
		}
		fmt.Printf("figure %d: %s, %dx%d\n", i+1, im.MediaType, cfg.Width, cfg.Height)
	}
	if out.ImagesTruncated {
		fmt.Println("some figures were left out (count or size caps)")
	}
	// Output:
	// result "plotted", 1 image(s)
	// figure 1: image/png, 640x480
}
