package gateway

import (
	"flag"
	"io"
	"strconv"
	"strings"
	"testing"
)

// The gateway binds its flags with the binder it shares with the
// supervisor: a bad variable is an error naming the variable and the value
// (cmd/gateway exits 2 with it), PYEXEC_LOG_TEXT included.
func TestBindFlagsNamesBadValue(t *testing.T) {
	for name, value := range map[string]string{
		"PYEXEC_MAX_TIMEOUT": "30", "PYEXEC_MAX_CONNS": "lots", "PYEXEC_LOG_TEXT": "sure",
	} {
		c := DefaultConfig()
		fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		err := c.BindFlags(fs, func(k string) string {
			if k == name {
				return value
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), name+"="+strconv.Quote(value)) {
			t.Errorf("%s=%q: %v, want an error naming the variable and the value", name, value, err)
		}
	}
}
