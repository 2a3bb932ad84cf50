package egress

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
)

// TestLogLimiter: per (client, host, status) a burst, then one a second;
// per client a budget of lines and bytes whatever it varies; what is
// thinned is summed up with its counts; blocks past the budget are written
// compact (every canary), and the budget refills.
func TestLogLimiter(t *testing.T) {
	var emitted []audit.Entry
	l := newLogLimiter(LogBudget{Lines: 100, LineEvery: 10 * time.Second, Bytes: 1 << 20, BytesPerSec: 1 << 20, SummaryEvery: time.Hour},
		func(e audit.Entry) { emitted = append(emitted, e) })
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l.now = func() time.Time { return now }
	admit := func(e audit.Entry) (bool, *audit.Entry) { return l.admit(&e) }
	deny := audit.Entry{Method: "GET", Host: "evil.example", Status: 403, Decision: audit.Deny}

	n := 0
	for i := range 100 {
		deny.Client = fmt.Sprintf("10.0.0.2:%d", 1000+i) // a new connection each time
		if ok, _ := admit(deny); ok {
			n++
		}
	}
	if n != denyBurst {
		t.Errorf("admitted %d of 100 to one host at once, want the burst of %d", n, denyBurst)
	}
	n = 0
	for i := range 1000 {
		e := deny
		e.Host, e.Path, e.Method = fmt.Sprintf("h%d.example", i), fmt.Sprintf("/%d", i), fmt.Sprint("M", i)
		if ok, _ := admit(e); ok {
			n++
		}
	}
	if n != 100-denyBurst {
		t.Errorf("admitted %d of 1000 to distinct hosts, want the rest of the client's budget, %d", n, 100-denyBurst)
	}
	other := deny
	other.Client, other.Host = "10.0.0.3:5", "h1.example"
	if ok, _ := admit(other); !ok {
		t.Error("a second client was limited with the first")
	}
	allow := audit.Entry{Method: "GET", Host: "api.example", Status: 200, Decision: audit.Allow, Client: deny.Client}
	if ok, _ := admit(allow); !ok {
		t.Error("a request that went upstream was not logged")
	}
	canary := audit.Entry{Method: "GET", Host: strings.Repeat("c", 5000), Path: "/" + strings.Repeat("p", 5000), Status: 403,
		Decision: audit.Block, Secret: "CANARY", Canary: true, Client: deny.Client}
	for range 5 {
		ok, sum := l.admit(&canary)
		if !ok || sum != nil || len(canary.Host) > compactField || len(canary.Path) > compactField {
			t.Fatalf("canary past the budget: written %v, host %d bytes, summary %v", ok, len(canary.Host), sum)
		}
	}
	blk := audit.Entry{Method: "POST", Host: "x.example", Status: 403, Decision: audit.Block, Secret: "API", Client: deny.Client}
	if ok, _ := admit(blk); !ok {
		t.Error("no block line past the budget")
	}
	if ok, _ := admit(blk); ok {
		t.Error("a second block within the second past the budget was written")
	}
	now = now.Add(time.Hour) // the budget is full again, the summary due
	ok, sum := admit(deny)
	if !ok || sum == nil || sum.Thinned == nil {
		t.Fatalf("an hour later: %v, summary %+v", ok, sum)
	}
	th := sum.Thinned
	if th.Lines != 80+920+1 || th.Denials != 1000 || th.Blocks != 1 || th.Hosts != 922 ||
		!reflect.DeepEqual(th.Sample, []string{"evil.example", "h80.example", "h81.example", "h82.example", "h83.example"}) ||
		sum.Client != "10.0.0.2" || sum.Decision != audit.Block || !strings.HasPrefix(sum.Reason, "1001 lines of client 10.0.0.2") {
		t.Errorf("summary %+v: %s", th, sum.Reason)
	}
	for range 30 {
		admit(deny)
	}
	if sums := l.flush(); len(sums) != 1 || sums[0].Thinned.Lines == 0 {
		t.Errorf("flush = %+v", sums)
	}
	if ok, _ := admit(deny); !ok {
		t.Error("a line after the final flush was thinned: it would go uncounted")
	}
	if len(emitted) != 0 {
		t.Errorf("the timer wrote %d summaries", len(emitted))
	}
}

// TestLogLimiterTimer: a flood that stops is summed up within SummaryEvery,
// without waiting for the client's next line.
func TestLogLimiterTimer(t *testing.T) {
	got := make(chan audit.Entry, 4)
	l := newLogLimiter(LogBudget{Lines: 1, SummaryEvery: 50 * time.Millisecond}, func(e audit.Entry) { got <- e })
	for i := range 10 {
		l.admit(&audit.Entry{Host: fmt.Sprint(i), Decision: audit.Deny, Client: "c:1"})
	}
	select {
	case e := <-got:
		if e.Thinned == nil || e.Thinned.Lines != 9 || e.Thinned.Hosts != 9 {
			t.Errorf("summary %+v", e.Thinned)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no summary")
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
	if last.Thinned == nil || last.Thinned.Denials != 100-denyBurst || !strings.Contains(last.Reason, "lines of client 127.0.0.1") {
		t.Errorf("no summary at shutdown; last line %+v", last)
	}
	h.done <- nil // for cleanup
}

// TestAuditLogFlood: one client varying everything it can (host, port,
// path, method, user agent, plain and CONNECT, HTTP/1.1 and HTTP/2) grows
// the log by its budget, not by its requests; every request it made is
// either a line or counted in a summary; a second client still gets its
// lines, and a canary and a secret are logged in the middle of the flood.
func TestAuditLogFlood(t *testing.T) {
	h := newHarness(t, "")
	c1, c2 := h.client(false), h.client(true)
	fi0, _ := os.Stat(h.logPath)
	start := time.Now()
	const n = 3000
	for i := range n {
		var u string
		c := c1
		switch i % 4 {
		case 0: // plain, a new host and port each time
			u = fmt.Sprintf("http://h%d.flood.test:%d/p%d", i, 1000+i, i)
		case 1: // CONNECT to a new host: refused before any tunnel
			u = fmt.Sprintf("https://h%d.flood.test:%d/p%d", i, 1000+i, i)
		case 2: // inside an HTTP/2 tunnel, a path the route refuses
			u, c = h.tlsURL("paths.test", fmt.Sprintf("/v2/%d", i)), c2
		case 3: // a long path of control bytes, six bytes each in JSON
			u = fmt.Sprintf("http://h%d.flood.test/%s?%s", i, strings.Repeat("%01", 4000), strings.Repeat("\"", 2000))
		}
		req, _ := http.NewRequest([]string{"GET", "POST", "DELETE"}[i%3/2+i%2], u, nil)
		req.Header.Set("User-Agent", fmt.Sprint("flood/", i))
		if resp, err := c.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}
	elapsed := time.Since(start)
	fi1, _ := os.Stat(h.logPath)
	grown := fi1.Size() - fi0.Size()
	b := h.srv.cfg.LogBudget
	bound := b.Bytes + int64(elapsed.Seconds()*float64(b.BytesPerSec)) + 16<<10 // + a few summaries
	t.Logf("%d denials in %v wrote %d bytes (bound %d)", n, elapsed, grown, bound)
	if grown > bound {
		t.Errorf("%d denials in %v wrote %d bytes to the log; the budget is about %d", n, elapsed, grown, bound)
	}

	// A second client has a budget of its own.
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
	tr := &http.Transport{Proxy: http.ProxyURL(&url.URL{Scheme: "http", Host: h.addr}), DialContext: d.DialContext}
	defer tr.CloseIdleConnections()
	if resp, err := (&http.Client{Transport: tr}).Get("http://second.flood.test/x"); err != nil {
		t.Skipf("no second loopback address to send from: %v", err)
	} else {
		resp.Body.Close()
	}
	h.waitEntry("second client's denial", func(e audit.Entry) bool { return e.Host == "second.flood.test" })
	// The flooding client's canary and secret are logged, past its budget.
	h.get(c1, "http://canary.flood.test/"+h.canary)
	h.get(c1, "http://secret.flood.test/?k="+apiToken)
	h.waitEntry("canary", func(e audit.Entry) bool { return e.Canary && e.Host == "canary.flood.test" })
	h.waitEntry("secret", func(e audit.Entry) bool { return e.Secret == "API" && e.Host == "secret.flood.test" })

	h.stop()
	lines, thinned := 0, 0
	for _, e := range h.entries() {
		switch {
		case e.Thinned != nil && e.Client == "127.0.0.1":
			thinned += e.Thinned.Lines
			if e.Thinned.Hosts < 1 || e.Thinned.First.IsZero() || e.Thinned.Last.Before(e.Thinned.First) {
				t.Errorf("summary %+v", e.Thinned)
			}
		case strings.Contains(e.Host, ".flood.test") && e.Host != "second.flood.test" || e.Host == "paths.test" && strings.HasPrefix(e.Path, "/v2/"):
			lines++
		}
	}
	if lines+thinned < n || lines+thinned > n+2 {
		t.Errorf("%d requests: %d lines and %d summed up", n, lines, thinned)
	}
	if lines > b.Lines+int(elapsed/b.LineEvery)+4 {
		t.Errorf("%d lines written one by one", lines)
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

// TestSentLedger: a request sent upstream stays in the ledger until its
// response body is closed, so Shutdown can log one whose handler never
// got to; a WebSocket's body keeps its Write.
func TestSentLedger(t *testing.T) {
	up := newUpstream(t)
	s := &Server{}
	s.cfg.setDefaults()
	s.cfg.AllowLoopback = true
	tr := s.newTransport(false)
	tr.DialContext = (&net.Dialer{}).DialContext
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/path?q=1", up.pport), nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Body.(io.ReadWriteCloser); ok {
		t.Error("a plain body passes for an upgraded connection")
	}
	s.sent.mu.Lock()
	n := len(s.sent.m)
	s.sent.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d requests in the ledger while the response is open", n)
	}
	resp.Body.Close()
	if u := s.sent.unfinished(); len(u) != 0 {
		t.Errorf("after the response closed: %+v", u)
	}
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	u := s.sent.unfinished()
	if len(u) != 1 || u[0].Path != "/path" || u[0].Query != "q=1" || u[0].Method != "GET" || !strings.Contains(u[0].Reason, "sidecar stopped") {
		t.Errorf("unfinished = %+v", u)
	}
	if u := s.sent.unfinished(); len(u) != 0 {
		t.Errorf("a request is logged twice: %+v", u)
	}
}

// TestAuditLogFloodUnreachable: requests on a route whose upstream cannot
// be reached (a name that does not resolve, a closed port) sent nothing,
// so they are thinned like denials and say so; a request that did reach
// the upstream before it failed is written however far past the budget.
func TestAuditLogFloodUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := portOf(t, ln.Addr())
	ln.Close()
	h := newHarness(t, defaultRoutes+fmt.Sprintf("- host: closed.test\n  ports: [%d]\n- host: \"*.example.com\"\n", closed),
		func(c *Config) { c.LogBudget = LogBudget{Lines: 50} })
	c := h.client(false)
	for i := range 300 {
		u := fmt.Sprintf("http://closed.test:%d/%d", closed, i)
		if i%2 == 1 {
			u = fmt.Sprintf("http://n%d.example.com/", i) // never resolves
		}
		if st, _ := h.get(c, u); st != http.StatusBadGateway {
			t.Fatalf("%s: %d", u, st)
		}
	}
	for range 5 { // reached the upstream, which cut the connection
		h.get(c, h.plainURL("other.test", "/hangup"))
	}
	h.stop()
	failed, hangups, thinned := 0, 0, 0
	for _, e := range h.entries() {
		switch {
		case e.Thinned != nil:
			thinned += e.Thinned.Lines
		case e.Path == "/hangup":
			hangups++
			if strings.Contains(e.Reason, notSentNote) {
				t.Errorf("a request that reached the upstream: %s", e.Reason)
			}
		case e.Status == http.StatusBadGateway:
			failed++
			if !strings.HasSuffix(e.Reason, notSentNote) {
				t.Errorf("reason %q", e.Reason)
			}
		}
	}
	if failed > 50+5 || failed+thinned != 300 || hangups != 5 {
		t.Errorf("300 unreachable: %d lines, %d summed up; %d of 5 hangups logged", failed, thinned, hangups)
	}
	h.done <- nil
}

// TestAuditLineBounded: one request with a long path and query of
// control bytes (six bytes each in JSON) and 1000 headers, together just
// under what a request head may take, writes one line of bounded size,
// over both HTTP versions.
func TestAuditLineBounded(t *testing.T) {
	h := newHarness(t, "")
	for _, h2 := range []bool{false, true} {
		c := h.client(h2)
		fi0, _ := os.Stat(h.logPath)
		u := h.tlsURL("paths.test", fmt.Sprintf("/v2/%v/", h2)+strings.Repeat("%01", 3<<10)+"?q="+strings.Repeat("%7F", 3<<10))
		req, _ := http.NewRequest("GET", u, nil)
		for i := range 1000 {
			req.Header.Set(fmt.Sprintf("X-H%d", i), "v")
		}
		if st, _, _ := h.do(c, req); st != http.StatusForbidden {
			t.Fatalf("h2 %v: %d", h2, st)
		}
		h.waitEntry("the long one", func(e audit.Entry) bool {
			return e.Host == "paths.test" && strings.HasPrefix(e.Path, fmt.Sprintf("/v2/%v/\x01", h2))
		})
		time.Sleep(50 * time.Millisecond)
		fi1, _ := os.Stat(h.logPath)
		if grown := fi1.Size() - fi0.Size(); grown > 2*audit.MaxField+3*audit.MaxField+2<<10 {
			t.Errorf("h2 %v: one request wrote %d bytes to the log", h2, grown)
		} else {
			t.Logf("h2 %v: %d bytes", h2, grown)
		}
	}
}
