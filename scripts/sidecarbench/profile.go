package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"
)

// A CPU profile's samples sorted into the parts of a proxy's work, so that
// the sidecar's profile and the upstream's can be set side by side: what is
// above the upstream's cost, part by part.

// part names what a sample's stack was doing. The innermost frame that
// tells decides: a memmove inside TLS is TLS, a syscall under the audit
// writer is the audit log.
func part(frames []string) string {
	for i, f := range frames {
		switch {
		case hasPrefix(f, "crypto/internal", "crypto/aes", "crypto/cipher", "crypto/sha", "crypto/ecdsa",
			"crypto/elliptic", "crypto/hmac", "crypto/subtle", "golang.org/x/crypto", "vendor/golang.org/x/crypto"):
			return "TLS crypto (AES-GCM, SHA-256, ECDSA)"
		case hasPrefix(f, "internal/runtime/syscall", "syscall.", "runtime.futex", "runtime.epollwait", "runtime.usleep",
			"runtime.write1", "runtime.read", "runtime.osyield", "runtime.tgkill", "runtime.madvise", "runtime.mmap"):
			return syscallPart(frames[i:])
		case hasPrefix(f, "runtime.gc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.scanobject", "runtime.scanSpan",
			"runtime.markroot", "runtime.sweepone", "runtime.greyobject", "runtime.wbBuf", "runtime.scanblock",
			"runtime.(*gcWork)", "runtime.(*mspan).sweep", "runtime.(*sweepLocked)", "internal/runtime/gc"),
			anyHas(frames, "runtime.gcBgMarkWorker"):
			return "GC"
		case hasPrefix(f, "runtime.mallocgc", "runtime.newobject", "runtime.makeslice", "runtime.growslice", "runtime.makemap",
			"runtime.mapassign", "runtime.concatstring", "runtime.slicebytetostring", "runtime.rawstring", "runtime.makechan",
			"runtime.nextFreeFast", "runtime.(*mcache)", "runtime.(*mcentral)", "runtime.(*mheap)",
			"runtime.memclrNoHeapPointers", "runtime.heapSetType", "runtime.stringtoslicebyte", "runtime.rawbyteslice"):
			return "allocation"
		case strings.Contains(f, "/lib/detect."):
			return "scanning (lib/detect)"
		case strings.Contains(f, "/lib/audit."),
			hasPrefix(f, "encoding/json", "os.", "internal/poll") && anyHas(frames, "/lib/audit."):
			return "audit log line (encode, hash, write)"
		case hasPrefix(f, "runtime.findRunnable", "runtime.schedule", "runtime.park_m", "runtime.stealWork", "runtime.mcall",
			"runtime.goready", "runtime.ready", "runtime.selectgo", "runtime.chansend", "runtime.chanrecv", "runtime.gopark",
			"runtime.netpoll", "runtime.runqgrab", "runtime.casgstatus", "runtime.goexit0", "runtime.newproc", "runtime.sysmon",
			"runtime.lock2", "runtime.unlock2", "runtime.checkTimers", "runtime.(*timer", "runtime.resetForSleep",
			"runtime.wakep", "runtime.startm", "runtime.stopm", "runtime.execute", "runtime.gogo", "gogo",
			"runtime.resetspinning", "runtime.procyield", "runtime.mPark", "runtime.semrelease", "runtime.semacquire",
			"runtime.send", "runtime.recv", "runtime.closechan"):
			return "scheduler, channels, goroutines"
		case strings.Contains(f, "http2"):
			return "HTTP/2 framing, hpack, flow control"
		case hasPrefix(f, "net/http", "net/textproto", "net/url", "mime"):
			return "net/http server and client (not HTTP/2)"
		case hasPrefix(f, "crypto/tls"):
			return "TLS record layer"
		case strings.Contains(f, "/lib/egress."), strings.Contains(f, "/lib/routes."):
			return "egress logic (routing, headers, inject, guards)"
		case strings.Contains(f, "goproxy"):
			return "goproxy (CONNECT)"
		}
	}
	return "other runtime and library"
}

// syscallPart names a system call by what made it.
func syscallPart(frames []string) string {
	switch {
	case anyHas(frames, "/lib/audit."):
		return "audit log line (encode, hash, write)"
	case anyHas(frames, "netFD).Write", "netFD).writev", "Writev"):
		return "syscall: socket write"
	case anyHas(frames, "netFD).Read"):
		return "syscall: socket read"
	case anyHas(frames, "netpoll"):
		return "syscall: epoll"
	}
	return "syscall: futex, timers, other"
}

func hasPrefix(s string, prefixes ...string) bool {
	return slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(s, p) })
}

func anyHas(frames []string, subs ...string) bool {
	return slices.ContainsFunc(frames, func(f string) bool {
		return slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(f, s) })
	})
}

// breakdown is the CPU of the profiles by part.
func breakdown(files ...string) (map[string]time.Duration, error) {
	parts := map[string]time.Duration{}
	for _, f := range files {
		out, err := exec.Command("go", "tool", "pprof", "-raw", f).Output()
		if err != nil {
			return nil, fmt.Errorf("go tool pprof -raw %s: %w", f, err)
		}
		samples, err := parseRaw(out)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		for _, s := range samples {
			parts[part(s.frames)] += s.cpu
		}
	}
	return parts, nil
}

type sample struct {
	cpu    time.Duration
	frames []string // innermost first
}

// parseRaw reads go tool pprof -raw of a CPU profile: the samples ("count
// nanoseconds: location ids") and the locations ("id: address M=n
// function file", then a line for each function inlined into it).
func parseRaw(raw []byte) ([]sample, error) {
	type rawSample struct {
		cpu  time.Duration
		locs []int
	}
	var (
		rs      []rawSample
		locs    = map[int][]string{}
		section string
		cur     = -1
	)
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "Samples:", line == "Locations", line == "Mappings":
			section = line
			continue
		}
		f := strings.Fields(line)
		switch {
		case section == "Samples:" && len(f) >= 2 && strings.HasSuffix(f[1], ":"):
			ns, err := strconv.ParseInt(strings.TrimSuffix(f[1], ":"), 10, 64)
			if err != nil {
				return nil, fmt.Errorf("sample %q: %w", line, err)
			}
			s := rawSample{cpu: time.Duration(ns)}
			for _, id := range f[2:] {
				n, err := strconv.Atoi(id)
				if err != nil {
					return nil, fmt.Errorf("sample %q: %w", line, err)
				}
				s.locs = append(s.locs, n)
			}
			rs = append(rs, s)
		case section == "Locations" && len(f) >= 4 && strings.HasSuffix(f[0], ":") && strings.HasPrefix(f[1], "0x"):
			id, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
			if err != nil {
				return nil, fmt.Errorf("location %q: %w", line, err)
			}
			cur, locs[id] = id, []string{f[3]}
		case section == "Locations" && len(f) >= 1 && cur >= 0 && !strings.HasSuffix(f[0], ":"):
			locs[cur] = append(locs[cur], f[0])
		}
	}
	samples := make([]sample, 0, len(rs))
	for _, s := range rs {
		var frames []string
		for _, id := range s.locs {
			frames = append(frames, locs[id]...)
		}
		samples = append(samples, sample{s.cpu, frames})
	}
	return samples, sc.Err()
}

// printBreakdown sets the sidecar's profiles beside the minimal proxy's and
// the upstream's, per unit of work (a request, a GiB).
func printBreakdown(title, unit string, per float64, sidecar, plain, upstream []string) {
	var parts [3]map[string]time.Duration
	var totals [3]time.Duration
	for i, files := range [][]string{sidecar, plain, upstream} {
		p, err := breakdown(files...)
		if err != nil {
			fmt.Printf("%s: no breakdown: %v\n", title, err)
			return
		}
		parts[i] = p
		for _, v := range p {
			totals[i] += v
		}
	}
	var names []string
	for _, p := range parts {
		for k := range p {
			if !slices.Contains(names, k) {
				names = append(names, k)
			}
		}
	}
	s, m, u := parts[0], parts[1], parts[2]
	slices.SortFunc(names, func(a, b string) int { return int((s[b] - m[b]) - (s[a] - m[a])) })
	conv := func(d time.Duration) float64 { return float64(d.Microseconds()) / per }
	if unit == "ms/GiB" {
		conv = func(d time.Duration) float64 { return float64(d.Milliseconds()) / per }
	}
	fmt.Println()
	fmt.Printf("%s: where the CPU goes, from the profiles (profiled samples; the profiler misses some)\n\n", title)
	fmt.Printf("| part | sidecar %s | %% of sidecar | minimal proxy | upstream, same requests | sidecar above minimal proxy | sidecar above upstream |\n", unit)
	fmt.Println("|---|---:|---:|---:|---:|---:|---:|")
	row := func(name string, sv, mv, uv time.Duration) {
		fmt.Printf("| %s | %.1f | %.0f%% | %.1f | %.1f | %+.1f | %+.1f |\n", name, conv(sv), 100*float64(sv)/float64(totals[0]),
			conv(mv), conv(uv), conv(sv)-conv(mv), conv(sv)-conv(uv))
	}
	for _, k := range names {
		row(k, s[k], m[k], u[k])
	}
	row("total", totals[0], totals[1], totals[2])
}
