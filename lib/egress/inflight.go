package egress

import (
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

// counted wraps a handler so that Shutdown knows it runs.
func (s *Server) counted(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.handlers.add()
		defer s.handlers.done()
		h(w, r)
	})
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
