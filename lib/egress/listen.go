package egress

import (
	"net"
	"strconv"
	"sync"
	"time"
)

// limitListener caps concurrent connections. A connection beyond the cap
// waits up to wait for a slot, then is answered 503 and closed, so a flood
// of connections costs a file descriptor for a moment, not memory.
type limitListener struct {
	net.Listener
	sem  chan struct{}
	wait time.Duration
}

func newLimitListener(l net.Listener, n int, wait time.Duration) *limitListener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), wait: wait}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.acquire() {
			return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
		}
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte(busyResponse))
		c.Close()
	}
}

func (l *limitListener) acquire() bool {
	select {
	case l.sem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.sem <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

const busyBody = "bb-egress: too many connections; retry later\n"

var busyResponse = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" +
	"Content-Length: " + strconv.Itoa(len(busyBody)) + "\r\n\r\n" + busyBody

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// chanListener hands intercepted TLS connections to the inner server.
type chanListener struct {
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newChanListener() *chanListener {
	return &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
}

// push gives c to the inner server; false when the server is closing.
func (l *chanListener) push(c net.Conn) bool {
	select {
	case l.ch <- c:
		return true
	case <-l.done:
		return false
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.closed.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero} }
