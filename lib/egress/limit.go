package egress

import (
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// Denials the audit log records in full, per client address and host:
// denyBurst at once, then one per denyEvery. The agent can send denied
// requests as fast as it likes; the log must not grow as fast.
const (
	denyBurst     = 20
	denyEvery     = time.Second
	maxDenyKeys   = 4096 // buckets kept before they are summed up and forgotten
	denyKeyMaxLen = 256  // of a host in a key: a bucket per long host name is no use
)

type denyKey struct {
	client string // the address, without the port: every connection has a new one
	host   string
	status int
}

type denyBucket struct {
	tokens  float64
	last    time.Time
	dropped int
	since   time.Time // of the first dropped
	method  string
}

// denyLimiter thins out identical denials: a token bucket per client,
// host and status. What it drops is counted, and summed up in one line
// before the next line it lets through, or when it is flushed.
type denyLimiter struct {
	mu  sync.Mutex
	m   map[denyKey]*denyBucket
	now func() time.Time
}

func newDenyLimiter() *denyLimiter {
	return &denyLimiter{m: map[denyKey]*denyBucket{}, now: time.Now}
}

func keyOf(e *audit.Entry) denyKey {
	client := e.Client
	if h, _, err := net.SplitHostPort(client); err == nil {
		client = h
	}
	host := e.Host
	if len(host) > denyKeyMaxLen {
		host = host[:denyKeyMaxLen]
	}
	return denyKey{client: client, host: host, status: e.Status}
}

// admit reports whether e is to be logged; if so, summary is a line to
// log before it for the denials dropped since the last one (nil if none).
func (l *denyLimiter) admit(e *audit.Entry) (ok bool, summary *audit.Entry) {
	k := keyOf(e)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.m[k]
	if b == nil {
		if len(l.m) >= maxDenyKeys {
			l.sweep(now)
		}
		b = &denyBucket{tokens: denyBurst, last: now}
		l.m[k] = b
	}
	b.tokens = min(denyBurst, b.tokens+float64(now.Sub(b.last))/float64(denyEvery))
	b.last = now
	if b.tokens < 1 {
		if b.dropped == 0 {
			b.since = now
		}
		b.dropped++
		b.method = e.Method
		return false, nil
	}
	b.tokens--
	if b.dropped > 0 {
		s := summaryEntry(k, b, now)
		b.dropped = 0
		return true, &s
	}
	return true, nil
}

// sweep forgets the buckets that are full again and dropped nothing: they
// are as good as new. (With maxDenyKeys busy ones, a new key goes
// unlimited until some fill up: better than unbounded memory.)
func (l *denyLimiter) sweep(now time.Time) {
	for k, b := range l.m {
		if b.dropped == 0 && b.tokens+float64(now.Sub(b.last))/float64(denyEvery) >= denyBurst {
			delete(l.m, k)
		}
	}
}

// flush returns a summary line for every bucket that dropped denials, and
// forgets them all.
func (l *denyLimiter) flush() []audit.Entry {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []audit.Entry
	for k, b := range l.m {
		if b.dropped > 0 {
			out = append(out, summaryEntry(k, b, now))
		}
	}
	l.m = map[denyKey]*denyBucket{}
	return out
}

func summaryEntry(k denyKey, b *denyBucket, now time.Time) audit.Entry {
	return audit.Entry{Time: now.UTC(), Method: b.method, Host: k.host, Status: k.status, Decision: audit.Deny, Client: k.client,
		Reason: fmt.Sprintf("%d more denials of %s to %s (status %d) since %s were not logged one by one: at most %d at once, then one per %v",
			b.dropped, k.client, k.host, k.status, b.since.UTC().Format(time.RFC3339), denyBurst, denyEvery)}
}
