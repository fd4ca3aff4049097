package gateway

import (
	"io"
	"net"
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
type lingerListener struct {
	net.Listener
}

func (l lingerListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		// Embedding keeps every *net.TCPConn method (SyscallConn for the
		// disconnect watcher, SetKeepAlive for fasthttp).
		return &lingerConn{TCPConn: tc}, nil
	}
	return c, err
}

type lingerConn struct {
	*net.TCPConn
	linger atomic.Bool
}

// lingerOnClose marks c, if it is a lingerConn, to close gracefully.
func lingerOnClose(c net.Conn) {
	if lc, ok := c.(*lingerConn); ok {
		lc.linger.Store(true)
	}
}

func (c *lingerConn) Close() error {
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
