package main

import (
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"testing"
	"time"
)

// burn spends about d of this process's CPU.
func burn(d time.Duration) {
	var sum [32]byte
	for start := time.Now(); time.Since(start) < d; {
		for range 1000 {
			sum = sha256.Sum256(sum[:])
		}
	}
}

func TestProcCPUCountsThisProcess(t *testing.T) {
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	burn(300 * time.Millisecond)
	after, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Wall time spent burning is at least the CPU it got; on a loaded
	// machine it may get less, never none.
	if got := after - before; got < 50*time.Millisecond || got > 2*time.Second {
		t.Errorf("300ms of hashing counted as %v of CPU", got)
	}
	if _, err := procCPU(1 << 30); err == nil {
		t.Error("no error for a process that does not exist")
	}
}

func TestPartNamesTheInnermostFrameThatTells(t *testing.T) {
	for _, c := range []struct {
		frames []string
		want   string
	}{
		{[]string{"runtime.memmove", "github.com/bb-bottles/bb/lib/detect.appendFlat", "github.com/bb-bottles/bb/lib/detect.(*Guard).Read"},
			"scanning (lib/detect)"},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.write", "os.(*File).Write", "github.com/bb-bottles/bb/lib/audit.(*Writer).writeLocked"},
			"audit log line (encode, hash, write)"},
		{[]string{"internal/runtime/syscall/linux.Syscall6", "syscall.write", "internal/poll.(*FD).Write", "net.(*netFD).Write", "crypto/tls.(*Conn).Write"},
			"syscall: socket write"},
		{[]string{"crypto/internal/fips140/aes/gcm.gcmAesDec", "crypto/tls.(*halfConn).decrypt", "github.com/bb-bottles/bb/lib/detect.(*Guard).Read"},
			"TLS crypto (AES-GCM, SHA-256, ECDSA)"},
		{[]string{"runtime.mallocgc", "runtime.newobject", "github.com/bb-bottles/bb/lib/egress.(*Server).forward"}, "allocation"},
		{[]string{"runtime.scanobject", "runtime.gcDrain", "runtime.gcBgMarkWorker"}, "GC"},
		{[]string{"net/http.(*http2Framer).ReadFrame", "net/http.(*http2serverConn).readFrames"}, "HTTP/2 framing, hpack, flow control"},
		{[]string{"github.com/bb-bottles/bb/lib/egress.redactHeader", "github.com/bb-bottles/bb/lib/egress.(*Server).forward"},
			"egress logic (routing, headers, inject, guards)"},
		{nil, "other runtime and library"},
	} {
		if got := part(c.frames); got != c.want {
			t.Errorf("part(%v) = %q, want %q", c.frames, got, c.want)
		}
	}
}

// A real profile, read back through go tool pprof -raw: the hashing it
// profiled lands in the crypto part, and the total is about what it ran.
func TestBreakdownReadsARealProfile(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs go tool pprof")
	}
	file := filepath.Join(t.TempDir(), "cpu.pprof")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		t.Fatal(err)
	}
	burn(500 * time.Millisecond)
	pprof.StopCPUProfile()
	f.Close()

	parts, err := breakdown(file)
	if err != nil {
		t.Fatal(err)
	}
	var total time.Duration
	for _, d := range parts {
		total += d
	}
	crypto := parts["TLS crypto (AES-GCM, SHA-256, ECDSA)"]
	if total < 50*time.Millisecond || total > 2*time.Second {
		t.Errorf("500ms of hashing profiled as %v: %v", total, parts)
	}
	if crypto < total*3/4 {
		t.Errorf("hashing is %v of %v profiled, want most: %v", crypto, total, parts)
	}
}

// The whole bench, tiny: it proves the scanner is on and measures every
// path; and it refuses to measure a sidecar that lets the canary through.
// It fails when bb-egress serve's command line or files change under it.
func TestBenchRunsEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds bb-egress and runs four processes")
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc")
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bench, egress := filepath.Join(dir, "sidecarbench"), filepath.Join(dir, "bb-egress")
	for _, b := range [][2]string{{bench, "./scripts/sidecarbench"}, {egress, "./cmd/bb-egress"}} {
		build := exec.Command("go", "build", "-o", b[0], b[1])
		build.Dir = root
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b[1], err, out)
		}
	}
	args := []string{"-bin", egress, "-n", "40", "-warm", "8", "-rounds", "1", "-upload", "2"}
	out, err := exec.Command(bench, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("sidecarbench: %v\n%s", err, out)
	}
	for _, want := range []string{"| GET, HTTP/1.1 |", "| POST 1 KiB JSON, HTTP/2 |", "2 MiB upload through the sidecar with scanning"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("no %q in the output:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "NaN") || strings.Contains(string(out), "Inf") {
		t.Errorf("a figure is not a number:\n%s", out)
	}

	// A sidecar that knows another canary lets the bench's through: no
	// figures for it.
	args = append(args, "-sidecar-env", "EGRESS_TOKEN_CANARY=another-canary-0123456789abcdefghijklmnopqrstu")
	out, err = exec.Command(bench, args...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is the scanner on?") || strings.Contains(string(out), "| GET, HTTP/1.1 |") {
		t.Errorf("measured a sidecar that does not scan (err %v):\n%s", err, out)
	}
}
