package warm

import (
	"fmt"
	"time"
)

// noteZygotes records whether any preloaded zygote can take orders: the
// moment the last one went away starts the clock NotReady reads. The
// keepers call it whenever a slot changes.
//
// Only the preloaded kind counts. The slim kind alone runs every script
// correctly, but a numpy or pandas script on it pays the imports (a second
// or more) and would miss its timeout under load: the service is then not
// what /health promises, and the caller should go elsewhere. With the slim
// kind off this is exactly the rule before it existed ("no zygote"), so
// readiness means the same to the tests and the load balancer either way.
// (While the preloaded kind restarts, inside the window, executions fall
// back to slim zygotes instead of waiting: see pick.)
func (e *warmEngine) noteZygotes() {
	if e.pools[KindPreloaded].ready() != nil {
		e.noneSince.Store(0)
		return
	}
	e.noneSince.CompareAndSwap(0, time.Now().UnixNano())
}

// NotReady implements the server's readiness: executions cannot run once no zygote has
// been ready for longer than window (every one dying at start, say). A
// shorter gap is a restart, which executions wait out.
func (e *warmEngine) NotReady(window time.Duration) string {
	e.noteZygotes()
	since := e.noneSince.Load()
	if since == 0 {
		return ""
	}
	if d := time.Since(time.Unix(0, since)); d > window {
		return fmt.Sprintf("no zygote has been ready for %v", d.Round(100*time.Millisecond))
	}
	return ""
}
