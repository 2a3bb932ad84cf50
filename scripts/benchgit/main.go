// Command benchgit measures the git gate side by side with its baseline in
// one run: git pushes of a large repository (50 MB and more of files) and of
// a long history (5,000 small commits) to git's own http-backend over TLS,
// straight and through bb-egress serve (a real process, the gate reading
// every push whole and scanning every object), with the gate's peak RSS
// during each. It prints a table and the ratios the issue sets goals for.
//
// Usage: go run ./scripts/benchgit [-mb 60] [-commits 5000] [-runs 3] [-bin bb-egress]
package main

import (
	"bufio"
	"bytes"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bb-bottles/bb/scripts/internal/proc"
)

const backend = "/usr/lib/git-core/git-http-backend"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "benchgit:", err)
		os.Exit(1)
	}
}

type result struct {
	name           string
	direct, gate   time.Duration
	peakMiB, sizeB float64
}

func run() error {
	mb := flag.Int("mb", 60, "size of the large repository's files, in MB")
	commits := flag.Int("commits", 5000, "commits of the long history")
	runs := flag.Int("runs", 3, "pushes of each, direct and through the gate (the median is kept)")
	bin := flag.String("bin", "", "bb-egress binary (built from ./cmd/bb-egress when empty)")
	flag.Parse()
	if _, err := exec.LookPath("git"); err != nil {
		return errors.New("git is not installed")
	}
	if _, err := os.Stat(backend); err != nil {
		return errors.New("git-http-backend is not installed (apt-get install git)")
	}
	tmp, err := os.MkdirTemp("", "bb-benchgit-")
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

	// The forge: git's http-backend behind a TLS server.
	root := filepath.Join(tmp, "forge")
	os.MkdirAll(root, 0o755)
	up := httptest.NewUnstartedServer(streamingCGI(root))
	up.EnableHTTP2 = false
	up.StartTLS()
	defer up.Close()
	upHost, upPort, _ := net.SplitHostPort(strings.TrimPrefix(up.URL, "https://"))
	upCA := filepath.Join(tmp, "upstream-ca.pem")
	os.WriteFile(upCA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o644)

	// bb-egress with a git route to the forge, pushes allowed anywhere.
	routes := filepath.Join(tmp, "routes.yaml")
	os.WriteFile(routes, []byte(fmt.Sprintf(`- host: %q
  ports: [%s]
  git: {repos: [bench/big, bench/many], push: ["refs/heads/*"]}
  inject: {header: Authorization, token: GITHUB, format: "Basic {basic:x-access-token}"}
`, upHost, upPort)), 0o644)
	addr, err := freeAddr()
	if err != nil {
		return err
	}
	egress := exec.Command(*bin, "serve", "--listen", addr, "--routes", routes, "--ca-dir", filepath.Join(tmp, "ca"),
		"--log", filepath.Join(tmp, "audit.jsonl"), "--upstream-ca", upCA, "--allow-loopback")
	egress.Env = append(os.Environ(), "EGRESS_TOKEN_CANARY=bench-canary-"+strings.Repeat("x", 32),
		"EGRESS_TOKEN_GITHUB=ghp_"+strings.Repeat("B", 36))
	errFile, _ := os.Create(filepath.Join(tmp, "bb-egress.stderr"))
	egress.Stderr = errFile
	if err := egress.Start(); err != nil {
		return err
	}
	defer proc.Stop(egress)
	if err := proc.WaitListen(addr); err != nil {
		msg, _ := os.ReadFile(errFile.Name())
		return fmt.Errorf("bb-egress: %w\n%s", err, msg)
	}
	sidecarCA := filepath.Join(tmp, "ca", "ca.pem")

	work := filepath.Join(tmp, "work")
	fmt.Fprintf(os.Stderr, "benchgit: making a repository of %d MB and one of %d commits\n", *mb, *commits)
	big := filepath.Join(work, "big")
	if err := makeBig(big, *mb); err != nil {
		return err
	}
	many := filepath.Join(work, "many")
	if err := makeMany(many, *commits); err != nil {
		return err
	}

	var results []result
	for _, tc := range []struct {
		name, repo, src string
	}{
		{fmt.Sprintf("push of a %d MB repository", *mb), "big", big},
		{fmt.Sprintf("push of %d small commits", *commits), "many", many},
	} {
		r := result{name: tc.name}
		var direct, gated []time.Duration
		for i := 0; i < *runs; i++ {
			// Each push to a fresh, empty repository: the whole pack goes.
			d, err := push(tc.src, root, fmt.Sprintf("bench/%s-direct-%d.git", tc.repo, i), up.URL, "", upCA)
			if err != nil {
				return fmt.Errorf("direct %s: %w", tc.name, err)
			}
			direct = append(direct, d)
			os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", egress.Process.Pid), []byte("5"), 0) //nolint:errcheck // resets VmHWM where the kernel allows
			g, err := push(tc.src, root, "bench/"+tc.repo+".git", up.URL, "http://"+addr, sidecarCA)
			if err != nil {
				msg, _ := os.ReadFile(errFile.Name())
				return fmt.Errorf("through the gate, %s: %w\n%s", tc.name, err, msg)
			}
			gated = append(gated, g)
			r.peakMiB = max(r.peakMiB, rss(egress.Process.Pid, "VmHWM"))
		}
		r.direct, r.gate = median(direct), median(gated)
		r.sizeB = packSize(tc.src)
		results = append(results, r)
	}

	if os.Getenv("BENCHGIT_LOG") != "" {
		data, _ := os.ReadFile(filepath.Join(tmp, "audit.jsonl"))
		os.Stderr.Write(data)
	}
	fmt.Println()
	fmt.Println("| git push, git's http-backend over TLS | pack MB | direct s | through the gate s | ratio | gate peak RSS MiB |")
	fmt.Println("|---|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %.1f | %.2f | %.2f | %.2fx | %.1f |\n", r.name, r.sizeB/1e6, r.direct.Seconds(), r.gate.Seconds(),
			r.gate.Seconds()/r.direct.Seconds(), r.peakMiB)
	}
	fmt.Println()
	for _, r := range results {
		fmt.Printf("git gate, %s: %.2f s vs %.2f s direct, %.2fx (goal <= 1.5x); peak RSS %.1f MiB (goal < 128)\n",
			r.name, r.gate.Seconds(), r.direct.Seconds(), r.gate.Seconds()/r.direct.Seconds(), r.peakMiB)
	}
	return nil
}

// push makes repo (a fresh bare repository under root) and pushes every
// branch of src to it, through proxy when set; it returns the push's wall
// time.
func push(src, root, repo, base, proxy, ca string) (time.Duration, error) {
	dir := filepath.Join(root, repo)
	os.RemoveAll(dir)
	if err := git(root, nil, "init", "-q", "--bare", "-b", "main", dir); err != nil {
		return 0, err
	}
	if err := git(dir, nil, "config", "http.receivepack", "true"); err != nil {
		return 0, err
	}
	env := []string{"GIT_SSL_CAINFO=" + ca}
	if proxy != "" {
		env = append(env, "HTTPS_PROXY="+proxy, "https_proxy="+proxy)
	}
	start := time.Now()
	err := git(src, env, "push", "-q", base+"/"+strings.TrimSuffix(repo, ".git")+".git", "main")
	return time.Since(start), err
}

func git(dir string, env []string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(cleanEnv(dir), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return nil
}

func cleanEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || strings.Contains(strings.ToLower(k), "proxy") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.invalid", "GIT_TERMINAL_PROMPT=0")
}

// makeBig is a repository of mb MB of files: source-like text, and some
// binary blobs that do not compress.
func makeBig(dir string, mb int) error {
	os.MkdirAll(dir, 0o755)
	if err := git(dir, nil, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	rng := mrand.New(mrand.NewPCG(1, 2))
	words := strings.Fields("func return if else for range struct type interface map string int error nil true false package import var const")
	total := 0
	for i := 0; total < mb<<20; i++ {
		var b bytes.Buffer
		if i%10 == 9 {
			// A binary blob: random bytes.
			data := make([]byte, 1<<20)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			b.Write(data)
		} else {
			for b.Len() < 256<<10 {
				for k := 0; k < 12; k++ {
					b.WriteString(words[rng.IntN(len(words))])
					b.WriteByte(' ')
				}
				fmt.Fprintf(&b, "%d\n", rng.Uint64())
			}
		}
		name := filepath.Join(dir, fmt.Sprintf("pkg%02d/file%04d.txt", i%20, i))
		os.MkdirAll(filepath.Dir(name), 0o755)
		if err := os.WriteFile(name, b.Bytes(), 0o644); err != nil {
			return err
		}
		total += b.Len()
	}
	if err := git(dir, nil, "add", "-A"); err != nil {
		return err
	}
	return git(dir, nil, "commit", "-qm", "a large repository")
}

// makeMany is a history of n small commits, written with git fast-import.
func makeMany(dir string, n int) error {
	os.MkdirAll(dir, 0o755)
	if err := git(dir, nil, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	var s bytes.Buffer
	when := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	for i := 1; i <= n; i++ {
		content := fmt.Sprintf("change %d of a small file\n%s\n", i, strings.Repeat("x", i%200))
		msg := fmt.Sprintf("commit %d: a small change", i)
		fmt.Fprintf(&s, "commit refs/heads/main\nmark :%d\ncommitter bench <bench@example.invalid> %d +0000\ndata %d\n%s\n", i, when+int64(i), len(msg), msg)
		if i > 1 {
			fmt.Fprintf(&s, "from :%d\n", i-1)
		}
		fmt.Fprintf(&s, "M 100644 inline dir%d/file%d.txt\ndata %d\n%s\n", i%50, i%500, len(content), content)
	}
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = dir
	cmd.Env = cleanEnv(dir)
	cmd.Stdin = &s
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git fast-import: %v: %s", err, out)
	}
	return git(dir, nil, "reset", "-q", "--hard", "main")
}

// packSize is the size of the pack a push of src's main sends.
func packSize(src string) float64 {
	cmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "-q", "--delta-base-offset")
	cmd.Dir = src
	cmd.Env = cleanEnv(src)
	cmd.Stdin = strings.NewReader("main\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return 0
	}
	cmd.Start()
	n, _ := io.Copy(io.Discard, out)
	cmd.Wait()
	return float64(n)
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
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

// streamingCGI runs git-http-backend for each request with the body piped
// to it as it arrives: Go's net/http/cgi refuses the chunked bodies git
// sends for large pushes, and buffering them would slow the direct push
// the gate is measured against.
func streamingCGI(root string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cmd := exec.Command(backend)
		cmd.Env = []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "HOME=" + root, "GIT_CONFIG_NOSYSTEM=1",
			"PATH=" + os.Getenv("PATH"), "GATEWAY_INTERFACE=CGI/1.1", "REQUEST_METHOD=" + r.Method,
			"PATH_INFO=" + r.URL.Path, "QUERY_STRING=" + r.URL.RawQuery, "CONTENT_TYPE=" + r.Header.Get("Content-Type"),
			"REMOTE_ADDR=" + r.RemoteAddr, "REMOTE_USER=bench"}
		if r.ContentLength >= 0 {
			cmd.Env = append(cmd.Env, "CONTENT_LENGTH="+strconv.FormatInt(r.ContentLength, 10))
		}
		if v := r.Header.Get("Content-Encoding"); v != "" {
			cmd.Env = append(cmd.Env, "HTTP_CONTENT_ENCODING="+v)
		}
		if v := r.Header.Get("Git-Protocol"); v != "" {
			cmd.Env = append(cmd.Env, "GIT_PROTOCOL="+v)
		}
		cmd.Stdin = r.Body
		cmd.Stderr = os.Stderr
		out, err := cmd.StdoutPipe()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer cmd.Wait()
		br := bufio.NewReaderSize(out, 64<<10)
		status := 200
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				http.Error(w, "bad CGI answer", http.StatusBadGateway)
				return
			}
			line = strings.TrimRight(line, "\r\n")
			if line == "" {
				break
			}
			k, v, _ := strings.Cut(line, ":")
			v = strings.TrimSpace(v)
			if strings.EqualFold(k, "Status") {
				status, _ = strconv.Atoi(strings.Fields(v)[0])
				continue
			}
			w.Header().Add(k, v)
		}
		w.WriteHeader(status)
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				w.Write(buf[:n])
				w.(http.Flusher).Flush()
			}
			if err != nil {
				return
			}
		}
	})
}
