package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// cpu is the CPU time each process has used so far.
type cpu struct{ sidecar, plain, up, self time.Duration }

func (b *bench) cpu() (cpu, error) {
	var c cpu
	var errs [4]error
	c.sidecar, errs[0] = procCPU(b.sidecar.Process.Pid)
	c.plain, errs[1] = procCPU(b.plain.Process.Pid)
	c.up, errs[2] = procCPU(b.up.Process.Pid)
	c.self, errs[3] = procCPU(os.Getpid())
	return c, errors.Join(errs[:]...)
}

func (c cpu) sub(d cpu) cpu {
	return cpu{c.sidecar - d.sidecar, c.plain - d.plain, c.up - d.up, c.self - d.self}
}

func (c cpu) add(d cpu) cpu {
	return cpu{c.sidecar + d.sidecar, c.plain + d.plain, c.up + d.up, c.self + d.self}
}

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

func (p phase) add(q phase) phase { return phase{p.cpu.add(q.cpu), p.wall + q.wall} }

// measured runs f between two readings of every process's CPU, and with
// -profile between the start and the end of a CPU profile of the sidecar
// and the upstream.
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
	b.plain.Process.Signal(s)
	b.up.Process.Signal(s)
}

// collectProfiles waits for the three servers' profiles and moves them to the
// profile folder under the phase's name.
func (b *bench) collectProfiles(name string) error {
	phase := name
	name = strings.NewReplacer(" ", "-", "/", "", ",", "").Replace(name)
	for i, who := range []string{"sidecar", "plain", "upstream"} {
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
		if b.profiled == nil {
			b.profiled = map[string][3]string{}
		}
		files := b.profiled[phase]
		files[i] = dst
		b.profiled[phase] = files
	}
	return nil
}

// printProfiles sets the sidecar's profiles beside the minimal proxy's
// (its own runs of the same requests) and the upstream's (the same
// requests, through the sidecar).
func (b *bench) printProfiles(o options, rows []small) {
	files := func(who int, phases ...string) (f []string) {
		for _, ph := range phases {
			if files, ok := b.profiled[ph]; ok {
				f = append(f, files[who])
			}
		}
		return f
	}
	for _, s := range rows {
		var via, plain []string
		for r := 1; r <= o.rounds; r++ {
			via, plain = append(via, smallPhase(s.name, viaSidecar, r)), append(plain, smallPhase(s.name, viaPlain, r))
		}
		printBreakdown(s.name, "µs/req", float64(s.n), files(0, via...), files(1, plain...), files(2, via...))
	}
	for _, size := range o.uploads {
		via, plain := uploadPhase(size, viaSidecar), uploadPhase(size, viaPlain)
		printBreakdown(fmt.Sprintf("upload %d MiB", size>>20), "ms/GiB", float64(size)/(1<<30), files(0, via), files(1, plain), files(2, via))
	}
}

func smallPhase(name string, p path, round int) string {
	return fmt.Sprintf("%s %s round %d", name, p, round)
}

func uploadPhase(size int64, p path) string { return fmt.Sprintf("upload %d MiB %s", size>>20, p) }

// load sends n requests from c clients at once on t's keep-alive
// connections; with every > 0, request i is not sent before start+i*every.
func (b *bench) load(t http.RoundTripper, r request, p path, h2 bool, n, c int, every time.Duration) error {
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
				if err := b.do(t, r, p, h2); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// small is one kind of request measured over every round: the phases of
// each path summed, and the spread of the rounds' sidecar / upstream.
type small struct {
	name    string
	phase   [3]phase // by path
	n       int      // requests measured each way, all rounds
	upProto string   // the sidecar's protocol to the upstream
	upConns int      // connections the upstream accepted during the runs via the sidecar
	lo, hi  float64  // lowest and highest of the rounds' sidecar / upstream

	fullRate float64 // the sidecar's requests a second flat out, summed over rounds
}

// small measures r in rounds, so that a change in the machine's load falls
// on every path alike.
func (b *bench) small(o options, r request, h2 bool) (small, error) {
	proto := "HTTP/1.1"
	if h2 {
		proto = "HTTP/2"
	}
	s := small{name: r.name + ", " + proto}
	for round := 0; round < o.rounds; round++ {
		if err := b.smallRound(&s, o, r, h2, round+1); err != nil {
			return s, err
		}
	}
	return s, nil
}

// smallRound measures r through the sidecar, the minimal proxy and direct,
// each paced to the same fraction (o.load) of the rate the sidecar reaches
// flat out. A server's CPU per request depends on how requests arrive: one
// that comes after a pause wakes it, one of a back-to-back stream shares
// the wake-up with others. Each at its own full speed would flatter the
// faster; pacing only the others to the sidecar's full speed would leave the
// sidecar alone batching. The same open-loop schedule for every path is
// also closer to an agent, whose requests are spaced by its model's replies.
func (b *bench) smallRound(s *small, o options, r request, h2 bool, round int) error {
	var every time.Duration
	if o.load > 0 {
		t := b.client(viaSidecar, h2)
		start := time.Now()
		err := b.load(t, r, viaSidecar, h2, o.warm, o.c, 0)
		t.CloseIdleConnections()
		if err != nil {
			return fmt.Errorf("%s %s rate: %w", s.name, viaSidecar, err)
		}
		full := time.Since(start) / time.Duration(o.warm)
		every = time.Duration(float64(full) / o.load)
		s.fullRate += float64(time.Second) / float64(full)
	}
	for _, p := range []path{viaSidecar, viaPlain, direct} {
		t := b.client(p, h2)
		if err := b.load(t, r, p, h2, o.warm, o.c, every); err != nil {
			return fmt.Errorf("%s %s warm-up: %w", s.name, p, err)
		}
		before, err := b.roundTrip(t, r, p, h2)
		if err != nil {
			return err
		}
		ph, err := b.measured(smallPhase(s.name, p, round), func() error { return b.load(t, r, p, h2, o.n, o.c, every) })
		if err != nil {
			return err
		}
		after, err := b.roundTrip(t, r, p, h2)
		t.CloseIdleConnections()
		if err != nil {
			return err
		}
		s.phase[p] = s.phase[p].add(ph)
		if p == viaSidecar {
			c0, _ := strconv.Atoi(before.Get("X-Upstream-Conns"))
			c1, _ := strconv.Atoi(after.Get("X-Upstream-Conns"))
			s.upProto, s.upConns = after.Get("X-Upstream-Proto"), s.upConns+c1-c0
			if ph.cpu.up > 0 {
				ratio := float64(ph.cpu.sidecar) / float64(ph.cpu.up)
				if s.hi == 0 || ratio < s.lo {
					s.lo = ratio
				}
				s.hi = max(s.hi, ratio)
			}
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
	printSmall(o, rows)
	if len(o.uploads) > 0 {
		if err := b.uploads(o); err != nil {
			return err
		}
	}
	if len(b.profiles) > 0 {
		b.printProfiles(o, rows)
		fmt.Printf("\nCPU profiles of every phase, each process: %s (go tool pprof -top FILE)\n", o.profile)
	}
	return nil
}

func printSmall(o options, rows []small) {
	us := func(d time.Duration, n int) float64 { return float64(d.Microseconds()) / float64(n) }
	fmt.Println()
	fmt.Printf("Small HTTPS keep-alive requests: %d rounds of %d requests after %d of warm-up, %d clients; a route injecting a token, the scanner on.\n",
		o.rounds, o.n, o.warm, o.c)
	fmt.Println("CPU from /proc/PID/stat of each process. Upstream: a plain Go TLS server. Minimal proxy: CONNECT, TLS interception,")
	fmt.Println("httputil.ReverseProxy setting the token; no allow-list, scan or log.")
	if o.load > 0 {
		fmt.Printf("Every path is paced to the same rate: %.0f%% of what the sidecar reaches flat out in the round.\n", 100*o.load)
	} else {
		fmt.Println("Every path runs flat out (-load 0): a faster path batches more and looks cheaper per request.")
	}
	fmt.Println()
	fmt.Println("| request (agent's protocol) | sidecar µs/req | minimal proxy µs/req | sidecar / minimal proxy | upstream µs/req via sidecar (its protocol, new conns) | sidecar / upstream (rounds) | upstream µs/req direct | sidecar / upstream direct | req/s measured, sidecar flat out |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range rows {
		sv, pv := us(s.phase[viaSidecar].cpu.sidecar, s.n), us(s.phase[viaPlain].cpu.plain, s.n)
		uv, ud := us(s.phase[viaSidecar].cpu.up, s.n), us(s.phase[direct].cpu.up, s.n)
		fmt.Printf("| %s | %.1f | %.1f | %s | %.1f (%s, %d) | %s (%.2f–%.2f) | %.1f | %s | %.0f, %.0f |\n",
			s.name, sv, pv, times(sv, pv), uv, s.upProto, s.upConns, times(sv, uv), s.lo, s.hi, ud, times(sv, ud),
			float64(s.n)/s.phase[viaSidecar].wall.Seconds(), s.fullRate/float64(o.rounds))
	}
	fmt.Println()
	if least := leastCPU(rows); least < 20*(time.Second/100) {
		fmt.Printf("(a process used only %v in one of these runs: its figures are within 10 ms, a tick; raise -n for precision)\n", least)
	}
	for _, s := range rows {
		if !strings.HasPrefix(s.name, "GET,") {
			continue
		}
		sv, pv := us(s.phase[viaSidecar].cpu.sidecar, s.n), us(s.phase[viaPlain].cpu.plain, s.n)
		uv, ud := us(s.phase[viaSidecar].cpu.up, s.n), us(s.phase[direct].cpu.up, s.n)
		fmt.Printf("sidecar CPU per small HTTPS keep-alive request (%s): %.0f µs vs the upstream's %.0f µs for the same requests, %s (goal <= 1.4x);"+
			" vs %.0f µs direct, %s; vs a minimal Go proxy's %.0f µs, %s\n", s.name, sv, uv, times(sv, uv), ud, times(sv, ud), pv, times(sv, pv))
	}
}

// times is a/b as a ratio, or n/a when b is too small to have been measured.
func times(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

// perCPU is MB a CPU second, or n/a when no CPU was measured.
func perCPU(mb, seconds float64) string {
	if seconds <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", mb/seconds)
}

// leastCPU is the least CPU a process that mattered to a figure used in a
// run: the proxy and the upstream, each path.
func leastCPU(rows []small) time.Duration {
	least := time.Duration(1<<63 - 1)
	for _, s := range rows {
		least = min(least, s.phase[viaSidecar].cpu.sidecar, s.phase[viaSidecar].cpu.up,
			s.phase[viaPlain].cpu.plain, s.phase[direct].cpu.up)
	}
	return least
}

// uploads sends each size once each way, over HTTP/1.1 as an agent's
// client would, and prints MB/s and CPU per GiB.
func (b *bench) uploads(o options) error {
	type row struct {
		size  int64
		phase [3]phase
	}
	var rows []row
	upProto := ""
	for _, size := range o.uploads {
		r := row{size: size}
		for _, p := range []path{direct, viaPlain, viaSidecar} {
			t := b.client(p, false)
			// The tunnel, the leaf and the upstream connection are set up
			// before the clock starts.
			hdr, err := b.roundTrip(t, request{name: "warm", method: http.MethodPost, path: "/upload", body: []byte("warm")}, p, false)
			if err != nil {
				return fmt.Errorf("upload warm-up: %w", err)
			}
			if p == viaSidecar {
				upProto = hdr.Get("X-Upstream-Proto")
			}
			ph, err := b.measured(uploadPhase(size, p), func() error { return b.upload(t, p, size) })
			t.CloseIdleConnections()
			if err != nil {
				return err
			}
			r.phase[p] = ph
		}
		rows = append(rows, r)
	}

	fmt.Println()
	fmt.Println("| upload of text, one POST, HTTP/1.1 | MB/s via sidecar | MB/s via minimal proxy | MB/s direct | sidecar / direct | sidecar CPU s/GiB | minimal proxy CPU s/GiB | upstream CPU s/GiB via sidecar / direct | MB/s one core of the sidecar's CPU allows |")
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range rows {
		gib := float64(r.size) / (1 << 30)
		mbs := func(p path) float64 { return float64(r.size) / r.phase[p].wall.Seconds() / 1e6 }
		s := r.phase[viaSidecar].cpu.sidecar.Seconds()
		fmt.Printf("| %d MiB | %.0f | %.0f | %.0f | %s | %.2f | %.2f | %.2f / %.2f | %s |\n", r.size>>20,
			mbs(viaSidecar), mbs(viaPlain), mbs(direct), times(mbs(viaSidecar), mbs(direct)),
			s/gib, r.phase[viaPlain].cpu.plain.Seconds()/gib,
			r.phase[viaSidecar].cpu.up.Seconds()/gib, r.phase[direct].cpu.up.Seconds()/gib, perCPU(float64(r.size)/1e6, s))
	}
	fmt.Println()
	for _, r := range rows {
		mbs := func(p path) float64 { return float64(r.size) / r.phase[p].wall.Seconds() / 1e6 }
		fmt.Printf("%d MiB upload through the sidecar with scanning: %.0f MB/s vs %.0f MB/s direct, %s (goal >= 400 MB/s); %.0f MB/s through a minimal Go proxy\n",
			r.size>>20, mbs(viaSidecar), mbs(direct), times(mbs(viaSidecar), mbs(direct)), mbs(viaPlain))
	}
	fmt.Printf("the sidecar sent the uploads upstream over %s; its peak RSS over the whole run: %.1f MiB\n", upProto, rss(b.sidecar.Process.Pid, "VmHWM"))
	return nil
}

// upload POSTs size bytes of log-like text and checks that the upstream
// received every byte.
func (b *bench) upload(t http.RoundTripper, p path, size int64) error {
	req, err := http.NewRequest(http.MethodPost, b.upURL+"/upload", io.LimitReader(&textSource{}, size))
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Authorization", "Bearer "+placeholder)
	if p == direct {
		req.Header.Set("Authorization", b.auth)
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	got, _ := io.ReadAll(resp.Body)
	if want := fmt.Sprintf("ok %d\n", size); resp.StatusCode != 200 || string(got) != want {
		return fmt.Errorf("upload %s: %d %q, want 200 %q", p, resp.StatusCode, got, want)
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

func rss(pid int, field string) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / 1024
			}
		}
	}
	return 0
}
