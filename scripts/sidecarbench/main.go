// Command sidecarbench measures what the egress sidecar costs, from the
// processes' own CPU accounting. bb-egress serve, a plain Go TLS upstream
// and this load generator run as three processes, and every figure is
// printed beside the same work done straight to the upstream:
//
//   - small HTTPS keep-alive requests (a GET, and a POST of 1 KiB of JSON),
//     over HTTP/1.1 and HTTP/2, on a route that injects a token, the
//     scanner on: the sidecar's CPU µs per request beside the upstream's
//     for the same requests, and the upstream's when the client goes
//     direct (on a loaded machine that one shows the load);
//   - large uploads of text through the sidecar, scanned: MB/s beside the
//     same upload direct, and each process's CPU seconds per GiB.
//
// CPU is utime+stime of /proc/PID/stat (all threads; the kernel keeps their
// sum exact to a tick, 10 ms) read before and after a fixed number of
// requests that follow a warm-up. Wall-clock rates are printed too, but on
// a shared machine they measure the machine as much as the sidecar.
//
// Only bb-egress serve's command line and files are used, so the bench
// keeps working however lib/egress changes inside.
//
// With -profile DIR the sidecar is built with the bbprof tag, and the
// sidecar and the upstream write a CPU profile of each measured phase to
// DIR (the figures then include the profiler's own cost).
//
// Usage: go run ./scripts/sidecarbench [-n 10000] [-warm 1000] [-c 4] [-rounds 2] [-upload 256,1024] [-bin FILE] [-profile DIR]
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var err error
	if len(os.Args) > 1 && os.Args[1] == "upstream" {
		err = serveUpstream()
	} else {
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
	uploads    []int64 // bytes
	profile    string
}

func run() error {
	n := flag.Int("n", 10000, "measured requests per small-request run")
	warm := flag.Int("warm", 1000, "warm-up requests before each run (not measured)")
	c := flag.Int("c", 4, "concurrent clients (keep-alive connections; HTTP/2 shares one)")
	rounds := flag.Int("rounds", 2, "rounds of each small-request run, direct then via the sidecar")
	uploads := flag.String("upload", "256,1024", "upload sizes in MiB, comma-separated (empty: none)")
	bin := flag.String("bin", "", "bb-egress binary (built from ./cmd/bb-egress when empty)")
	profile := flag.String("profile", "", "write CPU profiles of each measured phase to `DIR` (builds bb-egress -tags bbprof)")
	flag.Parse()
	o := options{n: *n, warm: *warm, c: *c, rounds: *rounds, profile: *profile}
	if o.n < o.c || o.c < 1 || o.rounds < 1 {
		return fmt.Errorf("-n %d, -c %d, -rounds %d: need a round, a client, and a request per client", o.n, o.c, o.rounds)
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

	b, err := start(*bin, o.profile)
	if err != nil {
		return err
	}
	defer b.close()
	if err := b.checkScanning(); err != nil {
		return err
	}
	return b.measure(o)
}

// bench is the three processes and the clients that reach the upstream
// through the sidecar and directly.
type bench struct {
	tmp              string
	sidecar, up      *exec.Cmd
	upURL            string // https://127.0.0.1:PORT
	auth             string // what the upstream demands in Authorization
	canary           string
	viaRoots, upRoot *x509.CertPool
	proxy            *url.URL
	profile          string
	profiles         []string
}

func start(bin, profile string) (*bench, error) {
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
		if err := os.MkdirAll(profile, 0o755); err != nil {
			return nil, err
		}
	}
	if err := writeCerts(tmp); err != nil {
		return nil, err
	}
	b.upRoot = x509.NewCertPool()
	if err := addPEM(b.upRoot, filepath.Join(tmp, "upstream-ca.pem")); err != nil {
		return nil, err
	}
	token, canary := randomString(24, hex.EncodeToString), randomString(32, base64.RawURLEncoding.EncodeToString)
	b.auth, b.canary = "Bearer bench-api-"+token, canary

	if err := b.startUpstream(); err != nil {
		return nil, err
	}
	if err := b.startSidecar(bin, "bench-api-"+token); err != nil {
		return nil, err
	}
	ok = true
	return b, nil
}

func (b *bench) close() {
	if b.sidecar != nil {
		stop(b.sidecar)
	}
	if b.up != nil {
		stop(b.up)
	}
	os.RemoveAll(b.tmp)
}

// startUpstream runs this program as the upstream and reads the address it
// listens on from its first line.
func (b *bench) startUpstream() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	cmd := exec.Command(self, "upstream")
	cmd.Env = append(os.Environ(), "UPSTREAM_AUTH="+b.auth,
		"UPSTREAM_CERT="+filepath.Join(b.tmp, "upstream.pem"), "UPSTREAM_KEY="+filepath.Join(b.tmp, "upstream-key.pem"))
	if b.profile != "" {
		cmd.Env = append(cmd.Env, "SIDECARBENCH_CPUPROFILE="+filepath.Join(b.tmp, "upstream.pprof"))
	}
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the upstream: %w", err)
	}
	b.up = cmd
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		return fmt.Errorf("the upstream did not say where it listens: %w", err)
	}
	b.upURL = "https://" + strings.TrimSpace(line)
	return nil
}

// startSidecar runs bb-egress serve with one route, to the upstream, that
// injects the token in Authorization over the agent's placeholder.
func (b *bench) startSidecar(bin, token string) error {
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
	cmd := exec.Command(bin, "serve", "--listen", addr, "--routes", routes, "--ca-dir", filepath.Join(b.tmp, "ca"),
		"--log", filepath.Join(b.tmp, "audit.jsonl"), "--upstream-ca", filepath.Join(b.tmp, "upstream-ca.pem"))
	// Only the bench's secrets: a token in this shell's environment would
	// change what the scanner searches for.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EGRESS_TOKEN_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "EGRESS_TOKEN_API="+token, "EGRESS_TOKEN_CANARY="+b.canary)
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
	if err := waitListen(addr); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return fmt.Errorf("bb-egress serve: %w\n%s", err, msg)
	}
	b.viaRoots = x509.NewCertPool()
	if err := addPEM(b.viaRoots, filepath.Join(b.tmp, "ca", "ca.pem")); err != nil {
		return fmt.Errorf("the sidecar's CA: %w", err)
	}
	b.proxy = &url.URL{Scheme: "http", Host: addr}
	return nil
}

// checkScanning proves the scanner is on: the canary in a body is refused
// before it reaches the upstream.
func (b *bench) checkScanning() error {
	t := b.client(true, false)
	defer t.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPost, b.upURL+"/v1/messages", strings.NewReader(`{"leak":"`+b.canary+`"}`))
	req.Header.Set("Authorization", "Bearer "+placeholder)
	resp, err := t.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("the canary request: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		return fmt.Errorf("the canary in a body got %d through the sidecar, want 403: is the scanner on?", resp.StatusCode)
	}
	return nil
}

// client reaches the upstream through the sidecar (via) or directly, on
// keep-alive connections, over HTTP/2 when h2 and HTTP/1.1 otherwise.
func (b *bench) client(via, h2 bool) *http.Transport {
	t := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: b.upRoot}, MaxIdleConnsPerHost: 64,
		DisableCompression: true, ForceAttemptHTTP2: h2}
	if via {
		t.Proxy = http.ProxyURL(b.proxy)
		t.TLSClientConfig.RootCAs = b.viaRoots
	}
	if !h2 {
		t.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return t
}

// request is one kind of small request: the same for both sides but for
// Authorization, which the agent sends as the placeholder and the sidecar
// turns into what the direct client sends itself.
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

func (b *bench) do(t http.RoundTripper, r request, via bool, h2 bool) error {
	_, err := b.roundTrip(t, r, via, h2)
	return err
}

// roundTrip sends r and checks the answer; it returns the upstream's
// headers, which tell its protocol and how many connections it has had.
func (b *bench) roundTrip(t http.RoundTripper, r request, via bool, h2 bool) (http.Header, error) {
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
	if via {
		req.Header.Set("Authorization", "Bearer "+placeholder)
	} else {
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
		return nil, fmt.Errorf("%s %s: %d %q, want 200 %q", r.method, r.path, resp.StatusCode, got, want)
	}
	if h2 != (resp.ProtoMajor == 2) {
		return nil, fmt.Errorf("%s %s: answered over %s", r.method, r.path, resp.Proto)
	}
	return resp.Header, nil
}

// cpu is the CPU time each process has used so far.
type cpu struct{ sidecar, up, self time.Duration }

func (b *bench) cpu() (cpu, error) {
	s, err := procCPU(b.sidecar.Process.Pid)
	if err != nil {
		return cpu{}, err
	}
	u, err := procCPU(b.up.Process.Pid)
	if err != nil {
		return cpu{}, err
	}
	me, err := procCPU(os.Getpid())
	return cpu{s, u, me}, err
}

func (c cpu) sub(d cpu) cpu { return cpu{c.sidecar - d.sidecar, c.up - d.up, c.self - d.self} }

// procCPU is utime+stime of the process, all its threads, from
// /proc/PID/stat (in USER_HZ ticks: 100 a second on Linux).
func procCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, field 2, is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(raw, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(raw[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	st, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}

// phase is one measured run: CPU used by each process and the wall time.
type phase struct {
	cpu  cpu
	wall time.Duration
}

// measured runs f between two readings of every process's CPU, and with
// -profile between the start and the end of a CPU profile of both servers.
func (b *bench) measured(name string, f func() error) (phase, error) {
	if b.profile != "" {
		b.signal(syscall.SIGUSR1)
	}
	before, err := b.cpu()
	if err != nil {
		return phase{}, err
	}
	t0 := time.Now()
	err = f()
	wall := time.Since(t0)
	after, cerr := b.cpu()
	if b.profile != "" {
		b.signal(syscall.SIGUSR2)
		if perr := b.collectProfiles(name); perr != nil {
			fmt.Fprintln(os.Stderr, "sidecarbench: profile:", perr)
		}
	}
	if err := errors.Join(err, cerr); err != nil {
		return phase{}, fmt.Errorf("%s: %w", name, err)
	}
	return phase{after.sub(before), wall}, nil
}

func (b *bench) signal(s os.Signal) {
	b.sidecar.Process.Signal(s)
	b.up.Process.Signal(s)
}

// collectProfiles waits for both servers' profiles and moves them to the
// profile folder under the phase's name.
func (b *bench) collectProfiles(name string) error {
	name = strings.NewReplacer(" ", "-", "/", "", ",", "").Replace(name)
	for _, who := range []string{"sidecar", "upstream"} {
		src := filepath.Join(b.tmp, who+".pprof")
		deadline := time.Now().Add(10 * time.Second)
		for {
			if _, err := os.Stat(src); err == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("no %s profile after 10s", who)
			}
			time.Sleep(20 * time.Millisecond)
		}
		dst := filepath.Join(b.profile, name+"-"+who+".pprof")
		if err := os.Rename(src, dst); err != nil {
			return err
		}
		b.profiles = append(b.profiles, dst)
	}
	return nil
}

// load sends n requests from c clients at once on t's keep-alive
// connections; with every > 0, request i is not sent before start+i*every.
func (b *bench) load(t http.RoundTripper, r request, via, h2 bool, n, c int, every time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, c)
	start := time.Now()
	for w := 0; w < c; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += c {
				if every > 0 {
					time.Sleep(time.Until(start.Add(time.Duration(i) * every)))
				}
				if err := b.do(t, r, via, h2); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// small is one kind of request measured over every round: the phases
// summed, and the spread of the round's sidecar / upstream ratios.
type small struct {
	name        string
	via, direct phase
	n           int     // requests measured, all rounds
	upProto     string  // the sidecar's protocol to the upstream
	upConns     int     // connections the upstream accepted during the runs via the sidecar
	ratioLo     float64 // lowest and highest of the rounds' sidecar / upstream
	ratioHi     float64
}

func (p phase) add(q phase) phase { return phase{p.cpu.add(q.cpu), p.wall + q.wall} }

func (c cpu) add(d cpu) cpu { return cpu{c.sidecar + d.sidecar, c.up + d.up, c.self + d.self} }

// small measures r in rounds, each direct then through the sidecar, so
// that a change in the machine's load falls on both sides alike.
func (b *bench) small(o options, r request, h2 bool) (small, error) {
	proto := "HTTP/1.1"
	if h2 {
		proto = "HTTP/2"
	}
	s := small{name: r.name + ", " + proto}
	for round := 0; round < o.rounds; round++ {
		if err := b.smallRound(&s, o, r, h2); err != nil {
			return s, err
		}
	}
	return s, nil
}

// smallRound measures r through the sidecar, then direct at the same rate:
// a server's CPU per request grows as requests come further apart (each one
// wakes it), so an unpaced direct run would flatter the upstream.
func (b *bench) smallRound(s *small, o options, r request, h2 bool) error {
	var every time.Duration
	for _, via := range []bool{true, false} {
		t := b.client(via, h2)
		if err := b.load(t, r, via, h2, o.warm, o.c, every); err != nil {
			return fmt.Errorf("%s warm-up: %w", s.name, err)
		}
		before, err := b.roundTrip(t, r, via, h2)
		if err != nil {
			return err
		}
		label := s.name + " direct"
		if via {
			label = s.name + " via"
		}
		p, err := b.measured(label, func() error { return b.load(t, r, via, h2, o.n, o.c, every) })
		if err != nil {
			return err
		}
		after, err := b.roundTrip(t, r, via, h2)
		t.CloseIdleConnections()
		if err != nil {
			return err
		}
		if via {
			c0, _ := strconv.Atoi(before.Get("X-Upstream-Conns"))
			c1, _ := strconv.Atoi(after.Get("X-Upstream-Conns"))
			s.upProto, s.upConns = after.Get("X-Upstream-Proto"), s.upConns+c1-c0
			s.via = s.via.add(p)
			ratio := float64(p.cpu.sidecar) / float64(p.cpu.up)
			if s.n == 0 || ratio < s.ratioLo {
				s.ratioLo = ratio
			}
			s.ratioHi = max(s.ratioHi, ratio)
			every = p.wall / time.Duration(o.n)
		} else {
			s.direct = s.direct.add(p)
		}
	}
	s.n += o.n
	return nil
}

func (b *bench) measure(o options) error {
	get := request{name: "GET", method: http.MethodGet, path: "/v1/models"}
	post := request{name: "POST 1 KiB JSON", method: http.MethodPost, path: "/v1/messages", body: jsonBody}
	var rows []small
	for _, h2 := range []bool{false, true} {
		for _, r := range []request{get, post} {
			s, err := b.small(o, r, h2)
			if err != nil {
				return err
			}
			rows = append(rows, s)
		}
	}
	us := func(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }
	fmt.Println()
	fmt.Printf("Sidecar CPU per small HTTPS keep-alive request: %d rounds of %d requests after %d of warm-up, %d clients; a route injecting a token, the scanner on.\n",
		o.rounds, o.n, o.warm, o.c)
	fmt.Println("CPU from /proc/PID/stat of each process; upstream = a plain Go TLS server, a separate process.")
	fmt.Println("Each round goes through the sidecar, then direct paced to the same request rate.")
	fmt.Println()
	fmt.Println("| request (agent's protocol) | sidecar µs/req | upstream µs/req via sidecar (its protocol there, new connections) | sidecar / upstream (rounds' range) | upstream µs/req direct, same rate | sidecar / upstream direct | client µs/req via / direct | req/s via / direct |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range rows {
		sv, uv, ud := us(s.via.cpu.sidecar, s.n), us(s.via.cpu.up, s.n), us(s.direct.cpu.up, s.n)
		fmt.Printf("| %s | %.1f | %.1f (%s, %d) | %.2fx (%.2f–%.2f) | %.1f | %.2fx | %.0f / %.0f | %.0f / %.0f |\n", s.name, sv, uv, s.upProto, s.upConns, sv/uv, s.ratioLo, s.ratioHi, ud, sv/ud,
			us(s.via.cpu.self, s.n), us(s.direct.cpu.self, s.n),
			float64(s.n)/s.via.wall.Seconds(), float64(s.n)/s.direct.wall.Seconds())
	}
	fmt.Println()
	for _, s := range rows {
		if strings.HasPrefix(s.name, "GET,") {
			sv, uv, ud := us(s.via.cpu.sidecar, s.n), us(s.via.cpu.up, s.n), us(s.direct.cpu.up, s.n)
			fmt.Printf("sidecar CPU per small HTTPS keep-alive request (%s) vs the upstream's for the same requests: %.0f µs vs %.0f µs, %.2fx (goal <= 1.4x); vs the upstream's direct: %.0f µs, %.2fx\n",
				s.name, sv, uv, sv/uv, ud, sv/ud)
		}
	}

	if len(o.uploads) > 0 {
		if err := b.uploads(o); err != nil {
			return err
		}
	}
	if len(b.profiles) > 0 {
		fmt.Println()
		fmt.Println("CPU profiles (go tool pprof -top FILE):")
		for _, p := range b.profiles {
			fmt.Println("  " + p)
		}
	}
	return nil
}

// uploads sends each size once direct and once through the sidecar, over
// HTTP/1.1 as an agent's client would, and prints MB/s and CPU per GiB.
func (b *bench) uploads(o options) error {
	fmt.Println()
	fmt.Println("| upload of text, one POST, HTTP/1.1 | MB/s via sidecar | MB/s direct | via / direct | sidecar CPU s/GiB | upstream CPU s/GiB via / direct | client CPU s/GiB via / direct |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	type row struct {
		size        int64
		via, direct phase
	}
	var rows []row
	upProto := ""
	for _, size := range o.uploads {
		r := row{size: size}
		for _, via := range []bool{false, true} {
			t := b.client(via, false)
			// The tunnel, the leaf and the upstream connection are set up
			// before the clock starts.
			hdr, err := b.roundTrip(t, request{name: "warm", method: http.MethodPost, path: "/upload", body: []byte("warm")}, via, false)
			if err != nil {
				return fmt.Errorf("upload warm-up: %w", err)
			}
			if via {
				upProto = hdr.Get("X-Upstream-Proto")
			}
			label := fmt.Sprintf("upload %d MiB direct", size>>20)
			if via {
				label = fmt.Sprintf("upload %d MiB via", size>>20)
			}
			p, err := b.measured(label, func() error { return b.upload(t, via, size) })
			t.CloseIdleConnections()
			if err != nil {
				return err
			}
			if via {
				r.via = p
			} else {
				r.direct = p
			}
		}
		gib := float64(size) / (1 << 30)
		mbs := func(p phase) float64 { return float64(size) / p.wall.Seconds() / 1e6 }
		fmt.Printf("| %d MiB | %.0f | %.0f | %.2fx | %.2f | %.2f / %.2f | %.2f / %.2f |\n", size>>20, mbs(r.via), mbs(r.direct), mbs(r.via)/mbs(r.direct),
			r.via.cpu.sidecar.Seconds()/gib, r.via.cpu.up.Seconds()/gib, r.direct.cpu.up.Seconds()/gib,
			r.via.cpu.self.Seconds()/gib, r.direct.cpu.self.Seconds()/gib)
		rows = append(rows, r)
	}
	fmt.Println()
	for _, r := range rows {
		mbs := func(p phase) float64 { return float64(r.size) / p.wall.Seconds() / 1e6 }
		fmt.Printf("%d MiB upload through the sidecar with scanning: %.0f MB/s vs %.0f MB/s direct, %.2fx (goal >= 400 MB/s)\n",
			r.size>>20, mbs(r.via), mbs(r.direct), mbs(r.via)/mbs(r.direct))
	}
	fmt.Printf("the sidecar sent the uploads upstream over %s; its peak RSS over the whole run: %.1f MiB\n", upProto, rss(b.sidecar.Process.Pid, "VmHWM"))
	return nil
}

// upload POSTs size bytes of log-like text and checks that the upstream
// received every byte.
func (b *bench) upload(t http.RoundTripper, via bool, size int64) error {
	req, err := http.NewRequest(http.MethodPost, b.upURL+"/upload", io.LimitReader(&textSource{}, size))
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", b.auth)
	if via {
		req.Header.Set("Authorization", "Bearer "+placeholder)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("ok %d\n", size); resp.StatusCode != 200 || string(got) != want {
		return fmt.Errorf("upload: %d %q, want 200 %q", resp.StatusCode, got, want)
	}
	return nil
}

// textSource yields repeating log-like text: the shape of an agent's
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

// serveUpstream is the upstream process: a plain Go TLS server (HTTP/1.1
// and HTTP/2) that demands the injected Authorization, reads the body and
// answers "ok LENGTH". Its address is the first line on stdout.
func serveUpstream() error {
	auth := os.Getenv("UPSTREAM_AUTH")
	if auth == "" {
		return errors.New("upstream: UPSTREAM_AUTH is not set (it is run by sidecarbench)")
	}
	if path := os.Getenv("SIDECARBENCH_CPUPROFILE"); path != "" {
		go profileOnSignal(path)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	var conns atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != auth {
				http.Error(w, "wrong or missing Authorization: the token was not injected", http.StatusUnauthorized)
				return
			}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			w.Header().Set("X-Upstream-Proto", r.Proto)
			w.Header().Set("X-Upstream-Conns", strconv.FormatInt(conns.Load(), 10))
			fmt.Fprintf(w, "ok %d\n", n)
		})}
	stopped := make(chan os.Signal, 1)
	signal.Notify(stopped, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stopped
		srv.Close()
	}()
	err = srv.ServeTLS(ln, os.Getenv("UPSTREAM_CERT"), os.Getenv("UPSTREAM_KEY"))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// profileOnSignal: SIGUSR1 starts a CPU profile, SIGUSR2 writes it to
// path (via path+".tmp", so that path appears complete).
func profileOnSignal(path string) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var f *os.File
	for s := range sig {
		switch {
		case s == syscall.SIGUSR1 && f == nil:
			var err error
			if f, err = os.Create(path + ".tmp"); err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
					f = nil
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "upstream: cpu profile:", err)
			}
		case s == syscall.SIGUSR2 && f != nil:
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			os.Rename(path+".tmp", path)
		}
	}
}

// writeCerts writes a CA (upstream-ca.pem) and its leaf for 127.0.0.1
// (upstream.pem, upstream-key.pem), ECDSA P-256 as the sidecar's own.
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sidecarbench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "upstream-ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644),
		os.WriteFile(filepath.Join(dir, "upstream.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644),
		os.WriteFile(filepath.Join(dir, "upstream-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
}

func addPEM(pool *x509.CertPool, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !pool.AppendCertsFromPEM(raw) {
		return fmt.Errorf("%s: no PEM certificate", file)
	}
	return nil
}

func randomString(n int, enc func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b)
	return enc(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func waitListen(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", addr); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("nothing listening on %s after 10s", addr)
}

func stop(cmd *exec.Cmd) {
	cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
}

func rss(pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
