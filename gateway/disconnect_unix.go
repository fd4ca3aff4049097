//go:build unix

package gateway

import (
	"errors"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sys/unix"
)

// watchDisconnect calls gone once if the client closes or resets its
// connection while the handler is still running, and returns a stop function
// that the handler must call before it returns (stop waits for the watcher).
//
// fasthttp gives no per-request signal for this: RequestCtx.Done only closes
// at server shutdown, and nothing reads the connection while a handler runs.
// So the watcher waits on the connection's read readiness through the Go
// poller (syscall.RawConn.Read) and peeks (MSG_PEEK, never consuming a byte):
//
//   - 0 bytes (FIN) or a reset: the client went away; call gone.
//   - some bytes: the client pipelined its next request; it is alive, and the
//     watcher stops (as net/http does) rather than spin on readable data.
//
// It is stopped by a read deadline in the past, set through RequestCtx so that
// fasthttp clears it again before reading the next request. Without a socket
// (an in-memory listener, TLS), it does nothing.
//
// A client that half-closes its sending side after the request (shutdown
// SHUT_WR) looks like one that went away; net/http treats it the same.
func watchDisconnect(ctx *fasthttp.RequestCtx, gone func()) (stop func()) {
	return watchConn(ctx, gone, false)
}

// watchDisconnectDetached is watchDisconnect for a watch that outlives the
// handler (a streamed answer, whose body is written after the handler
// returned): its stop never touches ctx, which fasthttp may have recycled
// for another connection by then if the write failed. It sets the deadline
// on the connection itself; fasthttp arms its own read deadline again
// before it reads the next request.
func watchDisconnectDetached(ctx *fasthttp.RequestCtx, gone func()) (stop func()) {
	return watchConn(ctx, gone, true)
}

func watchConn(ctx *fasthttp.RequestCtx, gone func(), detached bool) (stop func()) {
	nc := ctx.Conn()
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return func() {}
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return func() {}
	}
	// Lift the request's read timeout, which is still armed, so the watcher
	// can wait as long as the execution runs.
	if err := ctx.SetReadDeadline(time.Time{}); err != nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		var buf [1]byte
		closed := false
		err := raw.Read(func(fd uintptr) bool {
			for {
				n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
				switch {
				case errors.Is(err, unix.EINTR):
					continue
				case errors.Is(err, unix.EAGAIN):
					return false // nothing yet: wait for readiness
				case err != nil:
					closed = true // ECONNRESET and friends
				case n == 0:
					closed = true // orderly close
				}
				return true
			}
		})
		// err is set when stop's deadline ended the wait, or the socket was
		// closed under us; neither says anything about the client.
		if err == nil && closed {
			gone()
		}
	}()
	return func() {
		// Wake the watcher, then wait for it so it never outlives the
		// request. RequestCtx refuses deadline updates only after a
		// TimeoutHandler gave up on the request; set it on the connection
		// directly then.
		if detached || ctx.SetReadDeadline(time.Now()) != nil {
			_ = nc.SetReadDeadline(time.Now())
		}
		<-done
	}
}
