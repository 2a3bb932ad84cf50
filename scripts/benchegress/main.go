// Command benchegress measures the egress sidecar side by side with its
// baselines in one run: small HTTPS requests with keep-alive direct to an
// upstream, through bb-egress, and through mitmproxy doing the same
// allow-listing (hey -x drives all three); a large upload through bb-egress
// with scanning (MB/s, peak RSS); and RSS with many idle connections. It
// prints a table and the ratios the issue sets goals for.
//
// Usage: go run ./scripts/benchegress [-n requests] [-c clients] [-upload MiB] [-idle N]
package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/bb-bottles/bb/scripts/internal/proc"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchegress:", err)
		os.Exit(1)
	}
}

type result struct {
	name          string
	rps, p50, p99 float64 // p50/p99 in ms
	ok            bool
}

func run() error {
	n := flag.Int("n", 20000, "requests per hey run")
	c := flag.Int("c", 16, "concurrent clients")
	uploadMiB := flag.Int("upload", 1024, "upload size in MiB")
	idle := flag.Int("idle", 1000, "idle connections")
	bin := flag.String("bin", "", "bb-egress binary (built from ./cmd/bb-egress when empty)")
	flag.Parse()

	tmp, err := os.MkdirTemp("", "bb-benchegress-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	if *bin == "" {
		*bin = filepath.Join(tmp, "bb-egress")
		build := exec.Command("go", "build", "-o", *bin, "./cmd/bb-egress")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building bb-egress: %w", err)
		}
	}

	// The upstream: small answers for the request benchmark, a discarding
	// sink for the upload.
	up := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d\n", n)
			return
		}
		w.Write([]byte("ok\n"))
	}))
	up.EnableHTTP2 = false
	up.StartTLS()
	defer up.Close()
	upURL, _ := url.Parse(up.URL)
	upHost, upPort, _ := net.SplitHostPort(upURL.Host)
	caFile := filepath.Join(tmp, "upstream-ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644); err != nil {
		return err
	}

	// bb-egress, allowing only the upstream.
	routes := filepath.Join(tmp, "routes.yaml")
	os.WriteFile(routes, []byte(fmt.Sprintf("- host: %q\n  ports: [%s]\n", upHost, upPort)), 0o644)
	egressAddr, err := freeAddr()
	if err != nil {
		return err
	}
	egress := exec.Command(*bin, "serve", "--listen", egressAddr, "--routes", routes,
		"--ca-dir", filepath.Join(tmp, "ca"), "--log", filepath.Join(tmp, "audit.jsonl"), "--upstream-ca", caFile)
	egress.Env = append(os.Environ(), "EGRESS_TOKEN_CANARY=bench-canary-"+strings.Repeat("x", 32))
	// The sidecar tells people about every connection that fails its
	// handshake; the idle-connection run closes hundreds on purpose.
	egressErr, err := os.Create(filepath.Join(tmp, "bb-egress.stderr"))
	if err != nil {
		return err
	}
	egress.Stderr = egressErr
	if err := egress.Start(); err != nil {
		return fmt.Errorf("starting bb-egress: %w", err)
	}
	defer proc.Stop(egress)
	if err := proc.WaitListen(egressAddr); err != nil {
		msg, _ := os.ReadFile(egressErr.Name())
		return fmt.Errorf("bb-egress: %w\n%s", err, msg)
	}

	var results []result
	results = append(results, hey("direct", up.URL, "", *n, *c))
	results = append(results, hey("bb-egress", up.URL, "http://"+egressAddr, *n, *c))

	if mitm, addr, err := startMitm(tmp, upHost); err != nil {
		fmt.Fprintln(os.Stderr, "benchegress: mitmproxy not measured:", err)
	} else {
		// mitmproxy is two orders of magnitude slower: fewer requests keep the
		// run short without changing its rate.
		results = append(results, hey("mitmproxy", up.URL, "http://"+addr, *n/10, *c))
		proc.Stop(mitm)
	}

	fmt.Println()
	fmt.Println("| small HTTPS requests, keep-alive | req/s | p50 ms | p99 ms |")
	fmt.Println("|---|---:|---:|---:|")
	byName := map[string]result{}
	for _, r := range results {
		byName[r.name] = r
		if !r.ok {
			fmt.Printf("| %s | failed | | |\n", r.name)
			continue
		}
		fmt.Printf("| %s | %.0f | %.2f | %.2f |\n", r.name, r.rps, r.p50, r.p99)
	}
	d, e, m := byName["direct"], byName["bb-egress"], byName["mitmproxy"]
	fmt.Println()
	if d.ok && e.ok {
		fmt.Printf("bb-egress / direct req/s: %.2fx (goal >= 0.5x); added p50: %.2f ms (goal <= 0.5 ms)\n", e.rps/d.rps, e.p50-d.p50)
	}
	if e.ok && m.ok {
		fmt.Printf("bb-egress / mitmproxy req/s: %.1fx (goal >= 20x)\n", e.rps/m.rps)
	}

	rssBefore := rss(egress.Process.Pid, "VmRSS")
	mbps, err := upload(up.URL, "http://"+egressAddr, caFile, tmp, int64(*uploadMiB)<<20)
	if err != nil {
		fmt.Printf("upload: failed: %v\n", err)
	} else {
		fmt.Printf("upload %d MiB through bb-egress with scanning: %.0f MB/s (goal >= 300), peak RSS %.1f MiB (goal < 64; %.1f MiB before)\n",
			*uploadMiB, mbps, rss(egress.Process.Pid, "VmHWM"), rssBefore)
	}

	conns, err := idleConns(egressAddr, upURL.Host, *idle)
	if err != nil {
		fmt.Printf("idle connections: %v\n", err)
	}
	time.Sleep(500 * time.Millisecond)
	fmt.Printf("RSS with %d idle connections through bb-egress: %.1f MiB\n", len(conns), rss(egress.Process.Pid, "VmRSS"))
	for _, c := range conns {
		c.Close()
	}
	return nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

var (
	rpsRE = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	pctRE = regexp.MustCompile(`(?m)^\s+(50|99)%+ in ([0-9.]+) secs`)
)

// hey runs Debian's hey (which skips certificate checks, so the proxy's CA
// need not be installed) and parses its summary.
func hey(name, target, proxy string, n, c int) result {
	args := []string{"-n", strconv.Itoa(n), "-c", strconv.Itoa(c)}
	if proxy != "" {
		args = append(args, "-x", proxy)
	}
	args = append(args, target)
	out, err := exec.Command("hey", args...).CombinedOutput()
	r := result{name: name}
	if err != nil {
		fmt.Fprintf(os.Stderr, "benchegress: hey %s: %v\n%s\n", name, err, out)
		return r
	}
	if strings.Contains(string(out), "Error distribution") {
		fmt.Fprintf(os.Stderr, "benchegress: hey %s saw errors:\n%s\n", name, out)
	}
	if m := rpsRE.FindSubmatch(out); m != nil {
		r.rps, _ = strconv.ParseFloat(string(m[1]), 64)
		r.ok = true
	}
	for _, m := range pctRE.FindAllSubmatch(out, -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		if string(m[1]) == "50" {
			r.p50 = v * 1000
		} else {
			r.p99 = v * 1000
		}
	}
	return r
}

// startMitm runs mitmdump with an addon doing the same allow-listing as
// bb-egress: only the upstream's host passes, everything else is a 403.
func startMitm(tmp, allowed string) (*exec.Cmd, string, error) {
	if _, err := exec.LookPath("mitmdump"); err != nil {
		return nil, "", errors.New("mitmdump is not installed (apt-get install mitmproxy)")
	}
	addon := filepath.Join(tmp, "allow.py")
	os.WriteFile(addon, []byte(fmt.Sprintf(`from mitmproxy import http

ALLOWED = {%q}

def http_connect(flow):
    if flow.request.host not in ALLOWED:
        flow.response = http.Response.make(403, b"denied\n")

def request(flow):
    if flow.request.pretty_host not in ALLOWED:
        flow.response = http.Response.make(403, b"denied\n")
`, allowed)), 0o644)
	addr, err := freeAddr()
	if err != nil {
		return nil, "", err
	}
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("mitmdump", "-q", "--listen-host", host, "--listen-port", port,
		"--ssl-insecure", "--set", "confdir="+filepath.Join(tmp, "mitm"), "-s", addon)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	if err := proc.WaitListen(addr); err != nil {
		proc.Stop(cmd)
		return nil, "", err
	}
	return cmd, addr, nil
}

// upload streams size bytes of text that holds no secret through the proxy
// and returns MB/s as the upstream acknowledged them.
func upload(target, proxy, upstreamCA, tmp string, size int64) (float64, error) {
	pu, _ := url.Parse(proxy)
	// The proxy presents certificates from its own CA, created on start.
	pool := x509.NewCertPool()
	caPEM, err := os.ReadFile(filepath.Join(tmp, "ca", "ca.pem"))
	if err != nil {
		return 0, err
	}
	pool.AppendCertsFromPEM(caPEM)
	client := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu),
		TLSClientConfig: &tls.Config{RootCAs: pool}}}
	body := io.LimitReader(&textSource{}, size)
	start := time.Now()
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, target, body)
	req.ContentLength = size
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	line, _ := bufio.NewReader(resp.Body).ReadString('\n')
	got, _ := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	if resp.StatusCode != 200 || got != size {
		return 0, fmt.Errorf("status %d, upstream got %d of %d bytes", resp.StatusCode, got, size)
	}
	return float64(size) / time.Since(start).Seconds() / 1e6, nil
}

// textSource yields repeating log-like text: realistic for an agent's
// uploads, and free of any secret.
type textSource struct{ off int }

var textLine = []byte("2026-11-26T12:00:00Z INFO build step compiled package lib/egress in 1.234s (cache miss)\n")

func (t *textSource) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		c := copy(p[n:], textLine[t.off:])
		n += c
		t.off = (t.off + c) % len(textLine)
	}
	return n, nil
}

// idleConns opens n connections through the proxy, each tunnelled with
// CONNECT and left idle.
func idleConns(proxy, target string, n int) ([]net.Conn, error) {
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.DialTimeout("tcp", proxy, 5*time.Second)
		if err != nil {
			return conns, fmt.Errorf("after %d connections: %w", i, err)
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			c.Close()
			return conns, fmt.Errorf("CONNECT %d: %v %v", i, err, resp)
		}
		conns = append(conns, c)
	}
	return conns, nil
}

func rss(pid int, field string) float64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if strings.HasPrefix(s.Text(), field+":") {
			kb, _ := strconv.ParseFloat(strings.Fields(s.Text())[1], 64)
			return kb / 1024
		}
	}
	return 0
}
