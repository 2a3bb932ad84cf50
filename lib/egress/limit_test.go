package egress

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// TestDenyLimiter: a burst, then one a second, per client address, host
// and status; what is dropped is summed up in the next line let through,
// or by flush.
func TestDenyLimiter(t *testing.T) {
	l := newDenyLimiter()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	e := audit.Entry{Method: "GET", Host: "evil.example", Status: 403, Client: "10.0.0.2:1234"}
	admitted := 0
	for i := range 100 {
		e.Client = fmt.Sprintf("10.0.0.2:%d", 1000+i) // a new connection each time
		if ok, _ := l.admit(&e); ok {
			admitted++
		}
	}
	if admitted != denyBurst {
		t.Errorf("admitted %d of 100 at once, want the burst of %d", admitted, denyBurst)
	}
	other := e
	other.Host = "other.example"
	if ok, _ := l.admit(&other); !ok {
		t.Error("another host was limited with the first")
	}
	now = now.Add(denyEvery)
	ok, sum := l.admit(&e)
	if !ok || sum == nil || !strings.HasPrefix(sum.Reason, "80 more denials of 10.0.0.2 to evil.example (status 403)") {
		t.Fatalf("after %v: %v, summary %+v", denyEvery, ok, sum)
	}
	if ok, _ := l.admit(&e); ok {
		t.Error("a second line in the same second")
	}
	sums := l.flush()
	if len(sums) != 1 || !strings.HasPrefix(sums[0].Reason, "1 more denials") {
		t.Errorf("flush = %+v", sums)
	}
	if ok, _ := l.admit(&e); !ok {
		t.Error("after a flush the bucket is new")
	}
}

// TestAuditLogBounded: one request with a huge path or query writes a
// line of bounded size, with the query logged (redacted like the path),
// and a flood of denials writes a burst of lines and a summary.
func TestAuditLogBounded(t *testing.T) {
	h := newHarness(t, "")
	c := h.client(false)
	fi0, _ := os.Stat(h.logPath)
	long := strings.Repeat("A", 30<<10)
	h.get(c, h.plainURL("paths.test", "/v2/"+long+"?q="+long))
	e := h.waitEntry("deny long", func(e audit.Entry) bool { return e.Host == "paths.test" })
	fi1, _ := os.Stat(h.logPath)
	if grown := fi1.Size() - fi0.Size(); grown > 4<<10 {
		t.Errorf("one denied request wrote %d bytes to the audit log", grown)
	}
	if !strings.HasPrefix(e.Query, "q=AAAA") || !strings.HasSuffix(e.Query, " bytes]") {
		t.Errorf("query = %q", e.Query[:min(len(e.Query), 40)])
	}
	h.get(c, h.tlsURL("other.test", "/p?k=v&x="+h.canary[:10]))
	h.waitEntry("query logged", func(e audit.Entry) bool { return e.Host == "other.test" && e.Query == "k=v&x="+h.canary[:10] })
	h.get(c, h.tlsURL("other.test", "/p?k="+h.canary))
	h.waitEntry("query redacted", func(e audit.Entry) bool {
		return e.Host == "other.test" && e.Decision == audit.Block && strings.Contains(e.Query, "redacted")
	})

	n0 := len(h.entries())
	for range 100 {
		h.get(c, "http://evil.example/x")
	}
	if n := len(h.entries()) - n0; n > denyBurst+1 {
		t.Errorf("100 denials wrote %d lines", n)
	}
	h.stop()
	last := h.entries()[len(h.entries())-1]
	if !strings.Contains(last.Reason, "more denials of 127.0.0.1 to evil.example") {
		t.Errorf("no summary at shutdown; last line %+v", last)
	}
	h.done <- nil // for cleanup
}

type flakyWriter struct{ fail atomic.Bool }

func (f *flakyWriter) Write(p []byte) (int, error) {
	if f.fail.Load() {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}

// TestAuditFailureFailsClosed: while the audit log cannot be written,
// nothing is forwarded (503); once a line is written again, requests go
// through. A closed log stops everything for good.
func TestAuditFailureFailsClosed(t *testing.T) {
	fw := &flakyWriter{}
	aw := audit.NewStreamWriter(fw)
	h := newHarness(t, "", func(c *Config) { c.Audit = aw })
	c := h.client(false)
	u := h.plainURL("other.test", "/x")
	if st, _ := h.get(c, u); st != 200 {
		t.Fatalf("before: %d", st)
	}
	fw.fail.Store(true)
	h.get(c, u) // forwarded: its line is the write that fails
	before := h.up.count()
	for range 3 {
		if st, body := h.get(c, u); st != 503 || !strings.Contains(body, "audit log") {
			t.Errorf("while the log fails: %d %q", st, body)
		}
	}
	if _, err := c.Get(h.tlsURL("other.test", "/x")); err == nil {
		t.Error("a CONNECT while the log fails went through")
	}
	if h.up.count() != before {
		t.Error("a request was forwarded while the log failed")
	}
	fw.fail.Store(false)
	h.get(c, u) // refused, but its line is written: the log works again
	if st, _ := h.get(c, u); st != 200 {
		t.Errorf("after the log recovered: %d", st)
	}
	aw.Close()
	before = h.up.count()
	if st, _ := h.get(c, u); st != 503 || h.up.count() != before {
		t.Errorf("with the log closed: %d, forwarded %v", st, h.up.count() != before)
	}
}
