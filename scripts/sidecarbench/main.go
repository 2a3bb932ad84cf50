// Command sidecarbench measures what the egress sidecar costs, from the
// processes' own CPU accounting. bb-egress serve, a plain Go TLS upstream,
// a minimal Go TLS-intercepting proxy (the yardstick: what any such proxy
// costs) and this load generator run as separate processes, and every
// figure is printed beside the same work done by the yardstick and
// straight to the upstream:
//
//   - small HTTPS keep-alive requests (a GET, and a POST of 1 KiB of JSON),
//     over HTTP/1.1 and HTTP/2, on a route that injects a token, the
//     scanner on: the sidecar's CPU µs per request beside the minimal
//     proxy's, beside the upstream's for the same requests, and beside the
//     upstream's when the client goes direct; every path paced to the same
//     rate (70% of what the sidecar reaches flat out), as agents' requests
//     come spaced out;
//   - large uploads of text, scanned: MB/s and each process's CPU seconds
//     per GiB, through the sidecar, through the minimal proxy, and direct.
//
// CPU is utime+stime of /proc/PID/stat (all threads; the kernel keeps their
// sum exact to a tick, 10 ms) read before and after a fixed number of
// requests that follow a warm-up. A run proves first that the scanner is on
// (the canary in a small body and at the end of 8 MiB is refused). Wall-clock
// rates are printed too, but on a shared machine they measure the machine as
// much as the sidecar.
//
// Only bb-egress serve's command line and files are used, so the bench
// keeps working however lib/egress changes inside.
//
// With -profile DIR the sidecar is built with the bbprof tag; the sidecar,
// the minimal proxy and the upstream write a CPU profile of each measured
// phase to DIR, and their samples are sorted into parts of a proxy's work,
// side by side (the figures then include the profiler's own cost).
//
// Usage: go run ./scripts/sidecarbench [-n 6000] [-warm 500] [-c 4] [-rounds 2] [-load 0.7] [-upload 256,1024]
//
//	[-bin FILE] [-sidecar-env KEY=VALUE]... [-profile DIR]
package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/bb-bottles/bb/scripts/internal/proc"
)

func main() {
	var err error
	switch {
	case len(os.Args) > 1 && os.Args[1] == "upstream":
		err = serveUpstream()
	case len(os.Args) > 1 && os.Args[1] == "plainproxy":
		err = servePlainProxy()
	default:
		err = run()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "sidecarbench:", err)
		os.Exit(1)
	}
}

// The placeholder the agent sends in Authorization; the route replaces it
// with the real token, as it does for an agent's API key.
const placeholder = "bb-placeholder-api-00000000"

type options struct {
	n, warm, c int
	rounds     int
	load       float64 // every path's rate, as a fraction of the sidecar's flat out; 0: each flat out
	uploads    []int64 // bytes
	profile    string
	sidecarEnv []string // extra KEY=VALUE for bb-egress serve alone (GOGC=400, say)
}

// envList is a repeatable KEY=VALUE flag.
type envList []string

func (l *envList) String() string { return strings.Join(*l, " ") }

func (l *envList) Set(v string) error {
	if !strings.Contains(v, "=") {
		return fmt.Errorf("%q: want KEY=VALUE", v)
	}
	*l = append(*l, v)
	return nil
}

func run() error {
	n := flag.Int("n", 6000, "measured requests per small-request run")
	warm := flag.Int("warm", 500, "warm-up requests before each run (not measured)")
	c := flag.Int("c", 4, "concurrent clients (keep-alive connections; HTTP/2 shares one)")
	rounds := flag.Int("rounds", 2, "rounds of each small-request run, every path in each")
	load := flag.Float64("load", 0.7, "pace every path to this fraction of the sidecar's flat-out rate (0: each flat out)")
	uploads := flag.String("upload", "256,1024", "upload sizes in MiB, comma-separated (empty: none)")
	bin := flag.String("bin", "", "bb-egress binary (built from ./cmd/bb-egress when empty)")
	profile := flag.String("profile", "", "write CPU profiles of each measured phase to `DIR` (builds bb-egress -tags bbprof)")
	var sidecarEnv envList
	flag.Var(&sidecarEnv, "sidecar-env", "`KEY=VALUE` in bb-egress serve's environment alone, to try a setting (repeatable)")
	flag.Parse()
	o := options{n: *n, warm: *warm, c: *c, rounds: *rounds, load: *load, profile: *profile, sidecarEnv: sidecarEnv}
	if o.n < o.c || o.c < 1 || o.rounds < 1 || o.load < 0 || o.load > 1 {
		return fmt.Errorf("-n %d, -c %d, -rounds %d, -load %g: need a round, a client, a request per client, and a load in [0, 1]", o.n, o.c, o.rounds, o.load)
	}
	for _, s := range strings.Split(*uploads, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		mib, err := strconv.Atoi(s)
		if err != nil || mib <= 0 {
			return fmt.Errorf("-upload %q: want sizes in MiB like 256,1024", *uploads)
		}
		o.uploads = append(o.uploads, int64(mib)<<20)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		fmt.Println("sidecar CPU per request: skipped, it reads /proc/PID/stat (Linux only)")
		return nil
	}

	b, err := start(*bin, o)
	if err != nil {
		return err
	}
	defer b.close()
	// Interrupted, it still stops what it started and removes its files.
	stopped := make(chan os.Signal, 1)
	signal.Notify(stopped, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stopped
		b.close()
		os.Exit(130)
	}()
	if err := b.checkScanning(); err != nil {
		return err
	}
	return b.measure(o)
}

// path is the way a client reaches the upstream.
type path int

const (
	viaSidecar path = iota
	viaPlain        // the minimal proxy
	direct
)

func (p path) String() string { return [...]string{"sidecar", "minimal-proxy", "direct"}[p] }

// bench is the processes and what its clients need to reach the upstream
// each way.
type bench struct {
	tmp                string
	sidecar, plain, up *exec.Cmd
	upURL              string // https://127.0.0.1:PORT
	auth               string // what the upstream demands in Authorization
	canary             string
	sidecarRoots       *x509.CertPool // the sidecar's CA
	upRoots            *x509.CertPool // the upstream's CA, whose leaf the minimal proxy presents too
	proxy              [direct]*url.URL
	profile            string
	profiles           []string
	profiled           map[string][3]string // phase: the sidecar's, the minimal proxy's and the upstream's profile
}

func start(bin string, o options) (*bench, error) {
	profile := o.profile
	tmp, err := os.MkdirTemp("", "bb-sidecarbench-")
	if err != nil {
		return nil, err
	}
	b := &bench{tmp: tmp, profile: profile}
	ok := false
	defer func() {
		if !ok {
			b.close()
		}
	}()
	if bin == "" {
		bin = filepath.Join(tmp, "bb-egress")
		args := []string{"build", "-o", bin}
		if profile != "" {
			args = append(args, "-tags", "bbprof")
		}
		build := exec.Command("go", append(args, "./cmd/bb-egress")...)
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			return nil, fmt.Errorf("building bb-egress (run from the repository's root): %w", err)
		}
	}
	if profile != "" {
		// SIGUSR1 ends a sidecar built without the hook that catches it.
		out, err := exec.Command("go", "version", "-m", bin).Output()
		if err != nil {
			return nil, fmt.Errorf("-profile: go version -m %s: %w", bin, err)
		}
		if !strings.Contains(string(out), "-tags=bbprof") {
			return nil, fmt.Errorf("-profile needs a bb-egress built with go build -tags bbprof; %s is not", bin)
		}
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeCerts(tmp); err != nil {
		return nil, err
	}
	b.upRoots = x509.NewCertPool()
	if err := addPEM(b.upRoots, filepath.Join(tmp, "upstream-ca.pem")); err != nil {
		return nil, err
	}
	token := "bench-api-" + randomString(24, hex.EncodeToString)
	b.auth, b.canary = "Bearer "+token, randomString(32, base64.RawURLEncoding.EncodeToString)

	cert, key := "="+filepath.Join(tmp, "upstream.pem"), "="+filepath.Join(tmp, "upstream-key.pem")
	env := []string{"UPSTREAM_AUTH=" + b.auth, "UPSTREAM_CERT" + cert, "UPSTREAM_KEY" + key}
	if profile != "" {
		env = append(env, "SIDECARBENCH_CPUPROFILE="+filepath.Join(tmp, "upstream.pprof"))
	}
	var addr string
	if b.up, addr, err = startChild("upstream", env...); err != nil {
		return nil, err
	}
	b.upURL = "https://" + addr
	env = []string{"PLAIN_AUTH=" + b.auth, "PLAIN_CERT" + cert, "PLAIN_KEY" + key, "PLAIN_UPSTREAM_CA=" + filepath.Join(tmp, "upstream-ca.pem")}
	if profile != "" {
		env = append(env, "SIDECARBENCH_CPUPROFILE="+filepath.Join(tmp, "plain.pprof"))
	}
	if b.plain, addr, err = startChild("plainproxy", env...); err != nil {
		return nil, err
	}
	b.proxy[viaPlain] = &url.URL{Scheme: "http", Host: addr}
	if err := b.startSidecar(bin, token, o.sidecarEnv); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

func (b *bench) close() {
	for _, c := range []*exec.Cmd{b.sidecar, b.plain, b.up} {
		if c != nil {
			proc.Stop(c)
		}
	}
	os.RemoveAll(b.tmp)
}

// startSidecar runs bb-egress serve with one route, to the upstream, that
// injects the token in Authorization over the agent's placeholder.
func (b *bench) startSidecar(bin, token string, env []string) error {
	u, _ := url.Parse(b.upURL)
	routes := filepath.Join(b.tmp, "routes.yaml")
	yaml := fmt.Sprintf("- host: %q\n  ports: [%s]\n  inject: {header: Authorization, token: API, format: \"Bearer {token}\", placeholder: %s}\n",
		u.Hostname(), u.Port(), placeholder)
	if err := os.WriteFile(routes, []byte(yaml), 0o644); err != nil {
		return err
	}
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	// The upstream is on 127.0.0.1: a route naming the IP reaches it today;
	// --allow-loopback keeps the bench working should that change.
	cmd := exec.Command(bin, "serve", "--listen", addr, "--routes", routes, "--ca-dir", filepath.Join(b.tmp, "ca"),
		"--log", filepath.Join(b.tmp, "audit.jsonl"), "--upstream-ca", filepath.Join(b.tmp, "upstream-ca.pem"),
		"--allow-loopback")
	// Only the bench's secrets: a token in this shell's environment would
	// change what the scanner searches for.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESS_TOKEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "EGRESS_TOKEN_API="+token, "EGRESS_TOKEN_CANARY="+b.canary)
	cmd.Env = append(cmd.Env, env...)
	if b.profile != "" {
		cmd.Env = append(cmd.Env, "BB_EGRESS_CPUPROFILE="+filepath.Join(b.tmp, "sidecar.pprof"))
	}
	errFile, err := os.Create(filepath.Join(b.tmp, "bb-egress.stderr"))
	if err != nil {
		return err
	}
	defer errFile.Close()
	cmd.Stderr = errFile
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s serve: %w", bin, err)
	}
	b.sidecar = cmd
	if err := proc.WaitListen(addr); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return fmt.Errorf("bb-egress serve: %w\n%s", err, msg)
	}
	b.sidecarRoots = x509.NewCertPool()
	if err := addPEM(b.sidecarRoots, filepath.Join(b.tmp, "ca", "ca.pem")); err != nil {
		return fmt.Errorf("the sidecar's CA: %w", err)
	}
	b.proxy[viaSidecar] = &url.URL{Scheme: "http", Host: addr}
	return nil
}

// checkScanning proves that what is measured is scanned: the canary in a
// small body (read whole) and at the end of 8 MiB of the upload's text
// (streamed) does not get through the sidecar, over HTTP/1.1 or HTTP/2.
func (b *bench) checkScanning() error {
	for _, h2 := range []bool{false, true} {
		t := b.client(viaSidecar, h2)
		small := strings.NewReader(`{"leak":"` + b.canary + `"}`)
		large := io.MultiReader(io.LimitReader(&textSource{}, 8<<20), strings.NewReader(" "+b.canary+"\n"))
		for _, body := range []io.Reader{small, large} {
			req, _ := http.NewRequest(http.MethodPost, b.upURL+"/v1/messages", body)
			req.Header.Set("Authorization", "Bearer "+placeholder)
			resp, err := t.RoundTrip(req)
			if err != nil {
				continue // refused mid-body: the connection or stream is cut
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || strings.HasPrefix(string(got), "ok ") {
				t.CloseIdleConnections()
				return fmt.Errorf("the canary in a body got through the sidecar over %s (%d %q): is the scanner on?", resp.Proto, resp.StatusCode, got)
			}
		}
		t.CloseIdleConnections()
	}
	return nil
}

// client reaches the upstream by p on keep-alive connections, over HTTP/2
// when h2 and HTTP/1.1 otherwise.
func (b *bench) client(p path, h2 bool) *http.Transport {
	t := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.upRoots}, MaxIdleConnsPerHost: 64,
		DisableCompression: true, ForceAttemptHTTP2: h2}
	if p != direct {
		t.Proxy = http.ProxyURL(b.proxy[p])
	}
	if p == viaSidecar {
		t.TLSClientConfig.RootCAs = b.sidecarRoots
	}
	if !h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return t
}

// request is one kind of small request: the same every way but for
// Authorization, which the agent sends as the placeholder and the proxies
// turn into what the direct client sends itself.
type request struct {
	name, method, path string
	body               []byte
}

var jsonBody = func() []byte {
	b := []byte(`{"model":"bench-model","max_tokens":1024,"messages":[{"role":"user","content":"`)
	fill := "Summarise the build log of lib/egress and say which test failed and why. "
	for len(b) < 1024-4 {
		b = append(b, fill[len(b)%len(fill)])
	}
	return append(b, `"}]}`...)
}()

func (b *bench) do(t http.RoundTripper, r request, p path, h2 bool) error {
	_, err := b.roundTrip(t, r, p, h2)
	return err
}

// roundTrip sends r and checks the answer; it returns the upstream's
// headers, which tell its protocol and how many connections it has had.
func (b *bench) roundTrip(t http.RoundTripper, r request, p path, h2 bool) (http.Header, error) {
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
	}
	req, err := http.NewRequest(r.method, b.upURL+r.path, body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "sidecarbench/1")
	req.Header.Set("Accept", "application/json")
	if r.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+placeholder)
	if p == direct {
		req.Header.Set("Authorization", b.auth)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if want := fmt.Sprintf("ok %d\n", len(r.body)); resp.StatusCode != 200 || string(got) != want {
		return nil, fmt.Errorf("%s %s %s: %d %q, want 200 %q", p, r.method, r.path, resp.StatusCode, got, want)
	}
	if h2 != (resp.ProtoMajor == 2) {
		return nil, fmt.Errorf("%s %s %s: answered over %s", p, r.method, r.path, resp.Proto)
	}
	return resp.Header, nil
}
