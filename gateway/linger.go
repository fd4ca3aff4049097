package gateway

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// lingerTimeout bounds how long a refused upload is drained after the answer.
const lingerTimeout = time.Second

// lingerListener hands fasthttp TCP connections that can close gracefully.
//
// When the gateway refuses a body as too large, it answers at once and
// fasthttp closes the connection while the client is still uploading. Closing
// a socket with unread data makes the kernel send a reset, and many clients
// (Go's net/http, Python requests) then report "connection reset" instead of
// the 413 that was already on its way. A connection marked with
// lingerOnClose therefore closes like net/http does: it sends FIN, discards
// what the client still sends (nothing is buffered) for up to lingerTimeout,
// then closes.
//
// It also enforces the per-address connection cap (perIP, nil = none).
type lingerListener struct {
	net.Listener
	perIP *perIPLimit
}

func (l lingerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		tc, ok := c.(*net.TCPConn)
		if !ok || err != nil {
			return c, err
		}
		// Embedding keeps every *net.TCPConn method (SyscallConn for the
		// disconnect watcher, SetKeepAlive for fasthttp).
		lc := &lingerConn{TCPConn: tc}
		if l.perIP != nil {
			ip := remoteIP(tc)
			if !l.perIP.acquire(ip) {
				refuseConn(tc)
				continue
			}
			lc.release = func() { l.perIP.release(ip) }
		}
		return lc, nil
	}
}

type lingerConn struct {
	*net.TCPConn
	linger atomic.Bool
	// release, when set, frees the connection's per-address count on the
	// first Close.
	release func()
	once    sync.Once
}

// lingerOnClose marks c, if it is a lingerConn, to close gracefully.
func lingerOnClose(c net.Conn) {
	if lc, ok := c.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}

func (c *lingerConn) Close() error {
	if c.release != nil {
		c.once.Do(c.release)
	}
	if !c.linger.Load() {
		return c.TCPConn.Close()
	}
	if err := c.TCPConn.CloseWrite(); err != nil {
		return c.TCPConn.Close()
	}
	go func() {
		_ = c.TCPConn.SetReadDeadline(time.Now().Add(lingerTimeout))
		_, _ = io.Copy(io.Discard, c.TCPConn)
		_ = c.TCPConn.Close()
	}()
	return nil
}
