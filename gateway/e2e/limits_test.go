package e2e

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/python-executor/python-executor/internal/supervisortest"
	"github.com/python-executor/python-executor/limits"
)

// observed are limits a script can read back from inside its jail, by
// request field: proof that the value reached the enforcement, not only the
// supervisor's bookkeeping.
var observed = map[string]string{
	"open_files":   "resource.getrlimit(resource.RLIMIT_NOFILE)[0]",
	"cpu_seconds":  "resource.getrlimit(resource.RLIMIT_CPU)[0]",
	"file_size_mb": "resource.getrlimit(resource.RLIMIT_FSIZE)[0] // (1 << 20)",
}

// TestLimitTable drives every request field of the limit table through the
// real gateway and supervisor. Locally the supervisor is started with every
// limit's -max-<flag> one flag unit above the default (and the gateway's
// -max-timeout to match), so a request for exactly the maximum is accepted
// only because the table-derived flag took effect; against a running service
// (PYEXEC_E2E_URL) the maxima are the defaults. One unit above the maximum
// is refused with invalid_request naming the limit: by the gateway for the
// timeout (its own bound), by the supervisor, under the wire key, for the
// rest.
func TestLimitTable(t *testing.T) {
	supervisortest.ForEachEngine(t, func(t *testing.T, engine string) {
		def := limits.Defaults()
		mx := limits.Maxima(def)
		var base string
		if supervisortest.Remote() {
			base = supervisortest.StartStack(t, engine).Gateway.URL
		} else {
			var args []string
			for i, l := range limits.Table {
				step, text := l.FlagScale, func(v int64) string { return strconv.FormatInt(v/l.FlagScale, 10) }
				if l.Unit == limits.Duration {
					step, text = int64(time.Second), func(v int64) string { return time.Duration(v).String() }
				}
				mx.Put(i, mx.Get(i)+step)
				args = append(args, "-"+l.MaxFlag(), text(mx.Get(i)))
			}
			s := supervisortest.Start(t, supervisortest.Options{Engine: engine, Args: args, GatewayUser: supervisortest.GatewayUser})
			base = supervisortest.StartGateway(t, s, "-max-timeout", mx.Timeout.String()).URL
		}
		for i, l := range limits.Table {
			if l.HTTP == "" {
				continue
			}
			t.Run(l.HTTP, func(t *testing.T) {
				unit := l.HTTPScale
				if l.Unit == limits.Duration {
					unit = int64(time.Second)
				}
				top := mx.Get(i) / unit
				script := "def main(): return 1"
				if expr, ok := observed[l.HTTP]; ok {
					script = "import resource\ndef main(): return " + expr
				}
				r := execute(t, base, script, map[string]any{l.HTTP: top})
				got := r.wantOK(t)
				if _, ok := observed[l.HTTP]; ok {
					if n, _ := got.(float64); int64(n) != top {
						t.Errorf("%s=%d: the script sees %v", l.HTTP, top, got)
					}
				}
				r = execute(t, base, script, map[string]any{l.HTTP: top + 1})
				r.wantError(t, 400, "invalid_request")
				want := l.Wire
				if l.Unit == limits.Duration && l.HTTP == "timeout" {
					want = strconv.Quote(l.HTTP)
				}
				if !strings.Contains(r.Body.Error.Message, want) {
					t.Errorf("%s=%d: message %q does not name %s", l.HTTP, top+1, r.Body.Error.Message, want)
				}
			})
		}
		// Every field at once, each lowered: accepted.
		all := map[string]any{}
		for i, l := range limits.Table {
			if l.HTTP != "" {
				unit := l.HTTPScale
				if l.Unit == limits.Duration {
					unit = int64(time.Second)
				}
				all[l.HTTP] = json.Number(strconv.FormatInt(def.Get(i)/unit/2, 10))
			}
		}
		execute(t, base, "def main(): return 2", all).wantOK(t)
	})
}
