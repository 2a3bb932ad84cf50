package egress

import (
	"hash/maphash"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// LogBudget bounds how fast one client (an address, whatever its port) can
// make the audit log grow with lines that record nothing sent upstream:
// denials, blocks, tunnels opened, the agent's channel. Lines of requests
// that reached an upstream are never thinned: each has its line.
type LogBudget struct {
	Lines        int           // such lines written at once (300)
	LineEvery    time.Duration // then one more per (200ms)
	Bytes        int64         // their bytes at once (512 KiB)
	BytesPerSec  int64         // then this many more a second (8 KiB)
	SummaryEvery time.Duration // what was thinned is summed up within (10s)
}

func (b *LogBudget) setDefaults() {
	if b.Lines <= 0 {
		b.Lines = 300
	}
	if b.LineEvery <= 0 {
		b.LineEvery = 200 * time.Millisecond
	}
	if b.Bytes <= 0 {
		b.Bytes = 512 << 10
	}
	if b.BytesPerSec <= 0 {
		b.BytesPerSec = 8 << 10
	}
	if b.SummaryEvery <= 0 {
		b.SummaryEvery = 10 * time.Second
	}
}

// Within a client's budget, identical denials (same host and status) are
// thinned sooner: denyBurst at once, then one per denyEvery, so one noisy
// host does not use up the budget the others need.
const (
	denyBurst     = 20
	denyEvery     = time.Second
	maxDenyKeys   = 4096 // (client, host, status) buckets kept
	denyKeyMaxLen = 256  // of a host in a key: a bucket per long host name is no use
	maxClients    = 64   // clients with a budget of their own; the rest share one
	allClients    = 4    // the server-wide budget is this many clients' budgets
	otherClients  = "*"  // the shared one's name in summaries
	maxSample     = 5    // hosts named in a summary
	compactField  = 128  // a block's strings, once its client is past the budget
	lineOverhead  = 320  // a line's bytes besides its strings, about
)

type denyKey struct {
	client string
	host   string
	status int
}

type denyBucket struct {
	tokens float64
	last   time.Time
}

// clientBudget is one client's two token buckets (lines, bytes) and what
// it had thinned since its last summary.
type clientBudget struct {
	lines, bytes float64
	last         time.Time
	thin         audit.Thinned
	hosts        map[uint64]struct{}
	lastBlock    time.Time // of the last compact block written past the budget
}

// logLimiter decides, line by line, what a client's lines cost and
// whether they are written whole, written compact, or summed up.
type logLimiter struct {
	mu      sync.Mutex
	b       LogBudget
	now     func() time.Time
	seed    maphash.Seed
	keys    map[denyKey]*denyBucket
	clients map[string]*clientBudget
	all     clientBudget      // server-wide: many clients (addresses) flooding at once
	emit    func(audit.Entry) // writes a summary the timer finds due
	timer   *time.Timer
	stopped bool // flushed at shutdown: from then on everything is written
}

func newLogLimiter(b LogBudget, emit func(audit.Entry)) *logLimiter {
	b.setDefaults()
	return &logLimiter{b: b, now: time.Now, seed: maphash.MakeSeed(), emit: emit,
		keys: map[denyKey]*denyBucket{}, clients: map[string]*clientBudget{},
		all: clientBudget{lines: float64(allClients * b.Lines), bytes: float64(allClients * b.Bytes)}}
}

// lineClass is how the limiter treats a line.
type lineClass int

const (
	always lineClass = iota // written whole: a request that reached an upstream, a reload
	thin                    // may be summed up: nothing was sent
	block                   // never summed up whole: a known secret or a block
)

func classOf(e *audit.Entry) lineClass {
	switch {
	case e.Method == "RELOAD" || e.Rotation != nil:
		return always
	case e.Canary || e.Secret != "" || e.Decision == audit.Block:
		return block
	case e.Decision == audit.Deny:
		return thin
	case e.Decision == audit.Allow && (e.Method == "CONNECT" || e.Host == Hostname):
		// A tunnel opened, or the agent's own channel: nothing went out.
		return thin
	case e.Decision == audit.Allow && e.Status >= 500 && strings.HasSuffix(e.Reason, notSentNote):
		// An upstream that failed before it got the request: a wildcard
		// route's names that do not resolve must not be a way to flood.
		return thin
	}
	return always
}

// admit decides e. It returns whether to write e (possibly made compact)
// and, if the client had lines thinned, a summary to write before it.
func (l *logLimiter) admit(e *audit.Entry) (write bool, summary *audit.Entry) {
	class := classOf(e)
	if class == always {
		return true, nil
	}
	now := l.now()
	size := lineSize(e)
	client := clientOf(e.Client)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stopped {
		return true, nil
	}
	c := l.client(client, now)
	l.refill(&l.all, now, allClients)
	fits := c.lines >= 1 && c.bytes >= float64(size) && l.all.lines >= 1 && l.all.bytes >= float64(size)
	if class == thin && fits {
		fits = l.keyAdmits(denyKey{client: client, host: hostKey(e.Host), status: e.Status}, now)
	}
	if fits {
		c.lines--
		c.bytes -= float64(size)
		l.all.lines--
		l.all.bytes -= float64(size)
		return true, l.due(client, c, now)
	}
	if class == block && (e.Canary || now.Sub(c.lastBlock) >= denyEvery) {
		// Past the budget a block is still written, cut short: every
		// canary, and one other block per client a second, so blocks are
		// never summed up out of sight.
		if !e.Canary {
			c.lastBlock = now
		}
		compact(e)
		return true, l.due(client, c, now)
	}
	l.thinOut(c, e, size, now)
	return false, nil
}

// due returns c's summary if it has waited SummaryEvery; the timer writes
// it otherwise. A summary with every line let through would double the
// lines of a client just past its budget.
func (l *logLimiter) due(client string, c *clientBudget, now time.Time) *audit.Entry {
	if c.thin.Lines == 0 || now.Sub(c.thin.First) < l.b.SummaryEvery {
		return nil
	}
	return l.summaryOf(client, c, now)
}

// client returns the budget of a client, refilled for the time since it
// was last used.
func (l *logLimiter) client(name string, now time.Time) *clientBudget {
	c := l.clients[name]
	if c == nil {
		if len(l.clients) >= maxClients {
			l.sweepClients(now)
		}
		if len(l.clients) >= maxClients {
			name = otherClients
			c = l.clients[name]
		}
	}
	if c == nil {
		c = &clientBudget{lines: float64(l.b.Lines), bytes: float64(l.b.Bytes), last: now}
		l.clients[name] = c
	}
	l.refill(c, now, 1)
	return c
}

// refill adds to c what k clients' budgets earn in the time since it was
// last used.
func (l *logLimiter) refill(c *clientBudget, now time.Time, k int) {
	if c.last.IsZero() {
		c.last = now
	}
	if d := now.Sub(c.last); d > 0 {
		c.lines = min(float64(k*l.b.Lines), c.lines+float64(k)*float64(d)/float64(l.b.LineEvery))
		c.bytes = min(float64(int64(k)*l.b.Bytes), c.bytes+float64(k)*d.Seconds()*float64(l.b.BytesPerSec))
		c.last = now
	}
}

// sweepClients forgets the clients whose budgets are full again and who
// have nothing waiting to be summed up: they are as good as new.
func (l *logLimiter) sweepClients(now time.Time) {
	for k, c := range l.clients {
		d := now.Sub(c.last)
		if c.thin.Lines == 0 && c.lines+float64(d)/float64(l.b.LineEvery) >= float64(l.b.Lines) &&
			c.bytes+d.Seconds()*float64(l.b.BytesPerSec) >= float64(l.b.Bytes) {
			delete(l.clients, k)
		}
	}
}

// keyAdmits takes a token from the (client, host, status) bucket. With
// maxDenyKeys busy buckets a new key is not thinned by host: the client's
// budget still bounds it.
func (l *logLimiter) keyAdmits(k denyKey, now time.Time) bool {
	b := l.keys[k]
	if b == nil {
		if len(l.keys) >= maxDenyKeys {
			for k, b := range l.keys {
				if b.tokens+float64(now.Sub(b.last))/float64(denyEvery) >= denyBurst {
					delete(l.keys, k)
				}
			}
		}
		if len(l.keys) >= maxDenyKeys {
			return true
		}
		b = &denyBucket{tokens: denyBurst, last: now}
		l.keys[k] = b
	}
	b.tokens = min(denyBurst, b.tokens+float64(now.Sub(b.last))/float64(denyEvery))
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// thinOut counts e into its client's summary instead of writing it, and
// makes sure the summary is written within SummaryEvery.
func (l *logLimiter) thinOut(c *clientBudget, e *audit.Entry, size int, now time.Time) {
	t := &c.thin
	if t.Lines == 0 {
		t.First = now.UTC()
		c.hosts = map[uint64]struct{}{}
	}
	t.Lines++
	t.Bytes += int64(size)
	t.Last = now.UTC()
	switch e.Decision {
	case audit.Deny:
		t.Denials++
	case audit.Block:
		t.Blocks++
	default:
		t.Other++
	}
	h := maphash.String(l.seed, e.Host)
	if _, seen := c.hosts[h]; !seen {
		if len(c.hosts) < audit.MaxThinnedHosts {
			c.hosts[h] = struct{}{}
			t.Hosts++
			if len(t.Sample) < maxSample {
				t.Sample = append(t.Sample, audit.Truncate(e.Host, compactField))
			}
		} else {
			t.HostsCapped = true
		}
	}
	if l.timer == nil {
		l.timer = time.AfterFunc(l.b.SummaryEvery, l.tick)
	}
}

// summaryOf returns the summary line of c's thinned lines (nil if none)
// and starts c's count afresh.
func (l *logLimiter) summaryOf(client string, c *clientBudget, now time.Time) *audit.Entry {
	if c.thin.Lines == 0 {
		return nil
	}
	t := c.thin
	c.thin, c.hosts = audit.Thinned{}, nil
	decision := audit.Deny
	if t.Blocks > 0 {
		decision = audit.Block
	}
	var b strings.Builder
	b.WriteString(strconv.Itoa(t.Lines) + " lines of client " + client + " were not written one by one: ")
	b.WriteString(strconv.Itoa(t.Denials) + " denials, " + strconv.Itoa(t.Blocks) + " blocks, " + strconv.Itoa(t.Other) + " other, to ")
	if t.HostsCapped {
		b.WriteString("more than ")
	}
	b.WriteString(strconv.Itoa(t.Hosts) + " distinct hosts, from " + t.First.Format(time.RFC3339) + " to " + t.Last.Format(time.RFC3339))
	b.WriteString("; a client's budget is " + strconv.Itoa(l.b.Lines) + " such lines at once, then one per " + l.b.LineEvery.String())
	return &audit.Entry{Time: now.UTC(), Method: "SUMMARY", Decision: decision, Client: client, Reason: b.String(), Thinned: &t}
}

// tick writes the summaries that are due: every client's lines thinned
// since its last summary.
func (l *logLimiter) tick() {
	l.mu.Lock()
	l.timer = nil
	out := l.summaries()
	l.mu.Unlock()
	for _, e := range out {
		l.emit(e)
	}
}

func (l *logLimiter) summaries() []audit.Entry {
	now := l.now()
	var out []audit.Entry
	for name, c := range l.clients {
		if s := l.summaryOf(name, c, now); s != nil {
			out = append(out, *s)
		}
	}
	return out
}

// flush returns the summaries still owed, and stops thinning: it is called
// when the server stops, and a line logged after it must not go uncounted.
func (l *logLimiter) flush() []audit.Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stopped = true
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	return l.summaries()
}

// compact cuts a block's agent-chosen strings short: past its client's
// budget a block costs a few hundred bytes, whatever the request was.
func compact(e *audit.Entry) {
	for _, f := range []*string{&e.Method, &e.Host, &e.Path, &e.Query, &e.Route, &e.Client} {
		*f = audit.Truncate(*f, compactField)
	}
	e.Reason = audit.Truncate(e.Reason, 2*compactField)
	e.Git = nil
}

// lineSize is about how many bytes e's line will take, its strings
// escaped as JSON and cut as the writer cuts them (to MaxField escaped): a
// path of control bytes (%01%01...) is six bytes a byte in the log, and
// must cost that.
func lineSize(e *audit.Entry) int {
	n := lineOverhead
	for _, s := range []string{e.Method, e.Host, e.Path, e.Query, e.Reason, e.Route, e.Secret, e.Encoding, e.Client} {
		n += min(jsonSize(s[:min(len(s), audit.MaxField)]), audit.MaxField)
	}
	return n
}

// jsonSize bounds the bytes of s as a JSON string: a control byte, DEL or
// a byte of a multi-byte character may take six.
func jsonSize(s string) int {
	n := len(s)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f:
			n += 5
		case c == '"' || c == '\\':
			n++
		}
	}
	return n
}

// clientOf is a client's address without its port: every connection has
// a new one.
func clientOf(addr string) string {
	if h, _, err := net.SplitHostPort(addr); err == nil {
		return h
	}
	return addr
}

func hostKey(h string) string {
	if len(h) > denyKeyMaxLen {
		return h[:denyKeyMaxLen]
	}
	return h
}
