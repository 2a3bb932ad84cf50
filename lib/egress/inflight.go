package egress

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// inflight counts requests being handled, so Shutdown can wait for their
// lines (http.Server stops waiting once it closes connections, and never
// waits for hijacked ones).
type inflight struct {
	mu   sync.Mutex
	n    int
	zero chan struct{} // closed when n drops to 0
}

func (f *inflight) add() {
	f.mu.Lock()
	if f.n == 0 {
		f.zero = make(chan struct{})
	}
	f.n++
	f.mu.Unlock()
}

func (f *inflight) done() {
	f.mu.Lock()
	f.n--
	if f.n == 0 {
		close(f.zero)
	}
	f.mu.Unlock()
}

// idle is closed once no request is being handled.
func (f *inflight) idle() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.n == 0 {
		c := make(chan struct{})
		close(c)
		return c
	}
	return f.zero
}

// counted wraps a handler so that Shutdown knows it runs, and so that the
// upstream transport stops reading the agent's body when it returns.
func (s *Server) counted(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.add()
		defer s.handlers.done()
		life := &handlerLife{}
		defer life.end(w)
		h(w, r.WithContext(context.WithValue(r.Context(), lifeKey{}, life)))
	})
}

type lifeKey struct{}

// handlerLife guards the agent's request body against the upstream
// transport, which may go on reading it in a goroutine of its own after
// RoundTrip returned, and after the handler did. A read then would reach
// a finished request (over HTTP/2 a nil dereference that kills the
// sidecar; over HTTP/1 a read deadline set on the next request's
// connection). Once the handler ends, reads fail; one in flight is cut
// short by a read deadline and waited for.
type handlerLife struct {
	mu      sync.Mutex
	done    bool
	reading int
}

func (l *handlerLife) enter() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.done {
		return false
	}
	l.reading++
	return true
}

func (l *handlerLife) leave() {
	l.mu.Lock()
	l.reading--
	l.mu.Unlock()
}

// end runs as the handler returns, the request still valid.
func (l *handlerLife) end(w http.ResponseWriter) {
	l.mu.Lock()
	l.done = true
	n := l.reading
	l.mu.Unlock()
	if n == 0 {
		return
	}
	rc := http.NewResponseController(w)
	for deadline := time.Now().Add(lifeWait); time.Now().Before(deadline); {
		// Again each time: the read may set its own deadline as it starts.
		rc.SetReadDeadline(time.Now()) //nolint:errcheck // not every connection has deadlines
		time.Sleep(time.Millisecond)
		l.mu.Lock()
		n = l.reading
		l.mu.Unlock()
		if n == 0 {
			return
		}
	}
}

// lifeWait bounds how long a returning handler waits for a body read in
// flight, which its read deadline ends at once.
const lifeWait = 2 * time.Second

// errHandlerDone is what the transport reads once the handler has ended.
var errHandlerDone = errors.New("the request's handler has ended")

// lifeBody is the agent's body as the upstream transport reads it.
type lifeBody struct {
	io.ReadCloser
	life *handlerLife
}

func (b *lifeBody) Read(p []byte) (int, error) {
	if !b.life.enter() {
		return 0, errHandlerDone
	}
	defer b.life.leave()
	return b.ReadCloser.Read(p)
}

// sentLedger holds every request sent upstream until its response ends:
// what Shutdown logs for a request whose handler never got to.
type sentLedger struct {
	mu sync.Mutex
	m  map[*sentReq]struct{}
}

type sentReq struct {
	method, host, path, query string
	start                     time.Time
}

func (l *sentLedger) add(r *http.Request) *sentReq {
	q := &sentReq{method: r.Method, host: r.URL.Hostname(), path: r.URL.Path, query: r.URL.RawQuery, start: time.Now()}
	l.mu.Lock()
	if l.m == nil {
		l.m = map[*sentReq]struct{}{}
	}
	l.m[q] = struct{}{}
	l.mu.Unlock()
	return q
}

func (l *sentLedger) end(q *sentReq) {
	l.mu.Lock()
	delete(l.m, q)
	l.mu.Unlock()
}

// unfinished returns a line for each request still out, and forgets them.
func (l *sentLedger) unfinished() []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Entry
	for q := range l.m {
		out = append(out, audit.Entry{Time: q.start.UTC(), Method: q.method, Host: q.host, Path: q.path, Query: q.query,
			Decision: audit.Allow, DurationMS: ms(time.Since(q.start)),
			Reason: "sent upstream; the sidecar stopped before the request ended, so how it ended is unknown"})
		delete(l.m, q)
	}
	return out
}

// sentTransport is the upstream transport: every request it sends is in
// the ledger until its response body is closed (or it fails).
type sentTransport struct {
	*http.Transport
	ledger *sentLedger
}

func (t *sentTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	var wrote atomic.Bool
	r = r.WithContext(httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
	}))
	if life, ok := r.Context().Value(lifeKey{}).(*handlerLife); ok && r.Body != nil && r.Body != http.NoBody {
		r.Body = &lifeBody{ReadCloser: r.Body, life: life}
	}
	q := t.ledger.add(r)
	resp, err := t.Transport.RoundTrip(r)
	if err != nil {
		t.ledger.end(q)
		if !wrote.Load() {
			err = &notSentError{err}
		}
		return resp, err
	}
	end := sync.OnceFunc(func() { t.ledger.end(q) })
	if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
		// An upgraded connection: the WebSocket relay needs its Write.
		resp.Body = &endedRWC{ReadWriteCloser: rwc, end: end}
	} else {
		resp.Body = &endedBody{ReadCloser: resp.Body, end: end}
	}
	return resp, nil
}

// notSentError is a request that failed before any of it reached the
// upstream (its name did not resolve, the connection or handshake
// failed): its line says so, and counts against its client's log budget
// like a denial, since nothing went out.
type notSentError struct{ err error }

// notSentNote ends the reason of such a request's line.
const notSentNote = " (no request reached the upstream)"

func (e *notSentError) Error() string { return e.err.Error() + notSentNote }
func (e *notSentError) Unwrap() error { return e.err }

type endedBody struct {
	io.ReadCloser
	end func()
}

func (b *endedBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

type endedRWC struct {
	io.ReadWriteCloser
	end func()
}

func (b *endedRWC) Close() error {
	err := b.ReadWriteCloser.Close()
	b.end()
	return err
}
