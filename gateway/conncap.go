package gateway

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// perIPLimit caps the connections open from one client address.
//
// fasthttp's own MaxConnsPerIP wraps each connection in a type that hides
// the socket, which the disconnect watcher needs; counting here, in the
// listener the gateway already wraps, keeps *net.TCPConn reachable.
type perIPLimit struct {
	max int

	mu     sync.Mutex // guards counts
	counts map[string]int
}

func newPerIPLimit(max int) *perIPLimit {
	if max <= 0 {
		return nil
	}
	return &perIPLimit{max: max, counts: make(map[string]int)}
}

// acquire counts a connection from ip; false when ip has max open already.
func (l *perIPLimit) acquire(ip string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[ip] >= l.max {
		return false
	}
	l.counts[ip]++
	return true
}

func (l *perIPLimit) release(ip string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[ip]--; l.counts[ip] <= 0 {
		delete(l.counts, ip)
	}
}

// tooManyConns is the whole answer to a connection over the per-address cap:
// the gateway's error shape, written before any request is read.
var tooManyConns = func() []byte {
	body := `{"error":{"type":"` + string(errTooManyConns) + `","message":"too many connections from this address; retry"},"stdout":"","stderr":""}`
	return []byte("HTTP/1.1 " + strconv.Itoa(statusFor(errTooManyConns)) + " Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}()

// refuse answers c with tooManyConns and closes it, without blocking the
// accept loop on a client that does not read.
func refuseConn(c *net.TCPConn) {
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = c.Write(tooManyConns)
		_ = c.Close()
	}()
}

// remoteIP is c's peer address without the port.
func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}
