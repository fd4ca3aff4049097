package client_test

import (
	"context"
	"fmt"
	"log"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// Arguments and files (the "io" feature): main(**args) gets the decoded
// JSON values, the files are in the working directory before the script
// is imported, and what the script leaves in output/ comes back.
func ExampleClient_Execute_argsAndFiles() {
	c := client.New(client.Config{
		SocketPath: "/run/python-executor/supervisor.sock",
		Features:   []string{wire.FeatureIO},
	})
	defer c.Close()
	out, err := c.Execute(context.Background(), wire.Execute{
		Script: `
import os, pandas as pd
def main(column):
    df = pd.read_csv("data.csv")
    os.makedirs("output", exist_ok=True)
    df.describe().to_csv("output/summary.csv")
    return float(df[column].sum())
`,
		Args:  []byte(`{"column": "b"}`),
		Files: []wire.File{{Name: "data.csv", Data: []byte("a,b\n1,2\n3,4\n")}},
	}, nil)
	if err != nil {
		log.Fatal(err) // the supervisor could not be reached
	}
	if out.Err != nil {
		log.Fatalf("%s: %s", out.Err.Type, out.Err.Message) // e.g. invalid_args
	}
	fmt.Printf("result %s\n", out.Result)
	for _, f := range out.Files {
		fmt.Printf("%s: %d bytes\n", f.Name, len(f.Data))
	}
	if out.FilesTruncated {
		fmt.Println("some output files were left out by a cap")
	}
}
