package client_test

import (
	"context"
	"fmt"
	"os"

	"github.com/python-executor/python-executor/client"
	"github.com/python-executor/python-executor/wire"
)

// Figures a script leaves open when main() returns come back as PNGs when
// the client asks for wire.FeatureImages. (Needs a running supervisor, so
// it is compiled, not run, by go test.)
func ExampleOutcome_images() {
	c := client.New(client.Config{
		SocketPath: "/run/python-executor/supervisor.sock",
		Features:   []string{wire.FeatureImages},
	})
	defer c.Close()
	script := "import pandas as pd\n" +
		"def main():\n" +
		"    pd.DataFrame({'y': [1, 4, 9]}).plot()\n"
	out, err := c.Execute(context.Background(), wire.Execute{Script: script}, nil)
	if err != nil || out.Err != nil {
		fmt.Println("failed:", err, out.Err)
		return
	}
	for i, im := range out.Images {
		os.WriteFile(fmt.Sprintf("figure-%d.png", i+1), im.Data, 0o644) // im.MediaType is "image/png"
	}
	if out.ImagesTruncated {
		fmt.Println("some figures were left out (count or size caps)")
	}
}
