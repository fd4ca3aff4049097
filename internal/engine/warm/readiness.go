package warm

import (
	"fmt"
	"time"
)

// noteZygotes records whether any zygote can take orders: the moment the
// last one went away starts the clock NotReady reads. The keepers call it
// whenever a slot changes.
func (e *warmEngine) noteZygotes() {
	for _, s := range e.slots {
		if z := s.current(); z != nil && !z.broken.Load() {
			e.noneSince.Store(0)
			return
		}
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
