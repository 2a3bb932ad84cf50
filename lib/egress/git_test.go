package egress

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/bb-bottles/bb/lib/audit"
)

// The git gate against the real thing: git's own http-backend behind a
// TLS server is the upstream, and the real git client pushes and clones
// through the sidecar, as an agent's would.

const gitBackend = "/usr/lib/git-core/git-http-backend"

// gitUpstream is a forge: repositories under root served by
// git-http-backend over TLS (and plain HTTP), which takes only the
// credential the route injects, and records every request it answers.
type gitUpstream struct {
	t     testing.TB
	root  string
	tls   *httptest.Server
	plain *httptest.Server
	port  int
	pport int

	mu       sync.Mutex
	requests []gitRequest
}

type gitRequest struct {
	method, path, query string
	bodyLen             int
	auth                string
}

func newGitUpstream(t testing.TB, ca *CA) *gitUpstream {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
	if _, err := os.Stat(gitBackend); err != nil {
		t.Skip("git-http-backend is not installed")
	}
	u := &gitUpstream{t: t, root: t.TempDir()}
	backend := &cgi.Handler{Path: gitBackend, Env: append(gitEnv(u.root), "GIT_PROJECT_ROOT="+u.root, "GIT_HTTP_EXPORT_ALL=1")}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		u.mu.Lock()
		u.requests = append(u.requests, gitRequest{r.Method, r.URL.Path, r.URL.RawQuery, len(body), r.Header.Get("Authorization")})
		u.mu.Unlock()
		want := "Basic " + base64.StdEncoding.EncodeToString([]byte("x-access-token:"+apiToken))
		if r.TLS != nil && r.Header.Get("Authorization") != want {
			w.Header().Set("WWW-Authenticate", `Basic realm="forge"`)
			http.Error(w, "who are you?", http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		backend.ServeHTTP(w, r)
	})
	u.tls = httptest.NewUnstartedServer(handler)
	u.tls.TLS = &tls.Config{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return ca.Leaf("git.test") }}
	u.tls.EnableHTTP2 = true
	u.tls.StartTLS()
	u.plain = httptest.NewServer(handler)
	t.Cleanup(u.tls.Close)
	t.Cleanup(u.plain.Close)
	u.port, u.pport = portOf(t, u.tls.Listener.Addr()), portOf(t, u.plain.Listener.Addr())
	return u
}

// bare makes the bare repository name under the root, filled from src.
func (u *gitUpstream) bare(name string, src *gitRepo) *gitRepo {
	u.t.Helper()
	b := &gitRepo{t: u.t, dir: filepath.Join(u.root, name)}
	os.MkdirAll(b.dir, 0o755)
	b.git("init", "-q", "--bare", "-b", "main")
	b.git("config", "http.receivepack", "true")
	b.git("config", "uploadpack.allowFilter", "true")
	if src != nil {
		src.git("push", "-q", b.dir, "+refs/heads/*:refs/heads/*")
	}
	return b
}

// receivePacks are the pushes that reached the upstream: the POSTs to
// git-receive-pack longer than git's 4-byte probe.
func (u *gitUpstream) receivePacks() []gitRequest {
	u.mu.Lock()
	defer u.mu.Unlock()
	var out []gitRequest
	for _, r := range u.requests {
		if r.method == "POST" && strings.HasSuffix(r.path, "/git-receive-pack") && r.bodyLen > 4 {
			out = append(out, r)
		}
	}
	return out
}

func gitEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "GIT_") || strings.Contains(strings.ToLower(k), "proxy") || k == "HOME" {
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=agent", "GIT_AUTHOR_EMAIL=agent@example.invalid",
		"GIT_COMMITTER_NAME=agent", "GIT_COMMITTER_EMAIL=agent@example.invalid", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
}

type gitRepo struct {
	t   testing.TB
	dir string
	env []string // beyond gitEnv: the proxy and the CA, for the agent's
}

func (g *gitRepo) run(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = g.dir
	cmd.Env = append(gitEnv(g.dir), g.env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (g *gitRepo) git(args ...string) string {
	g.t.Helper()
	out, err := g.run(args...)
	if err != nil {
		g.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(out)
}

func (g *gitRepo) commit(msg string, files map[string][]byte) string {
	g.t.Helper()
	for name, data := range files {
		p := filepath.Join(g.dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			g.t.Fatal(err)
		}
	}
	g.git("add", "-A")
	g.git("commit", "-q", "--allow-empty", "-m", msg)
	return g.git("rev-parse", "HEAD")
}

// state is what a repository holds: its refs and its objects.
func (g *gitRepo) state() string {
	g.t.Helper()
	refs := g.git("for-each-ref", "--format=%(objectname) %(refname)")
	objs := strings.Split(g.git("cat-file", "--batch-all-objects", "--batch-check"), "\n")
	sort.Strings(objs)
	return refs + "\n--\n" + strings.Join(objs, "\n")
}

// gitBed is a sidecar with a git route to a forge, and an agent's clone.
type gitBed struct {
	h     *harness
	up    *gitUpstream
	bare  *gitRepo
	agent *gitRepo
	url   string
}

const gitRoutes = `
- host: git.test
  ports: [{{GIT}}, {{GITPLAIN}}]
  git:
    repos: [acme/widgets, group/sub/project]
    push: ["refs/heads/agent/*", "refs/tags/v*"]
  inject: {header: Authorization, token: API, format: "Basic {basic:x-access-token}"}
- host: git.test
  ports: [{{GIT}}]
  paths: [/acme/widgets]
- host: other.test
  ports: [{{TLS}}]
`

func newGitBed(t *testing.T, cfg ...func(*Config)) *gitBed {
	t.Helper()
	ca, err := LoadOrCreateCA(t.TempDir(), 8)
	if err != nil {
		t.Fatal(err)
	}
	up := newGitUpstream(t, ca)
	routes := strings.ReplaceAll(strings.ReplaceAll(gitRoutes, "{{GITPLAIN}}", strconv.Itoa(up.pport)), "{{GIT}}", strconv.Itoa(up.port))
	h := newHarness(t, routes, append([]func(*Config){func(c *Config) { c.UpstreamRoots.AddCert(ca.Certificate()) }}, cfg...)...)
	caFile := filepath.Join(h.dir, "agent-ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.srv.CA().Raw}), 0o644)

	seed := &gitRepo{t: t, dir: t.TempDir()}
	seed.git("init", "-q", "-b", "main")
	seed.commit("initial", map[string][]byte{"README.md": []byte("# widgets\n")})
	b := &gitBed{h: h, up: up, bare: up.bare("acme/widgets.git", seed), url: fmt.Sprintf("https://git.test:%d/acme/widgets", up.port)}
	up.bare("acme/other.git", seed)

	b.agent = &gitRepo{t: t, dir: t.TempDir(), env: []string{
		"HTTPS_PROXY=http://" + h.addr, "https_proxy=http://" + h.addr, "HTTP_PROXY=http://" + h.addr, "http_proxy=http://" + h.addr,
		"GIT_SSL_CAINFO=" + caFile}}
	b.agent.git("clone", "-q", b.url, ".")
	return b
}

// push runs git push in the agent's clone and returns its output and
// whether it succeeded.
func (b *gitBed) push(args ...string) (string, bool) {
	out, err := b.agent.run(append([]string{"push"}, args...)...)
	return out, err == nil
}

// refused checks that a push was refused with want in git's output, that
// the upstream received no pack and is as it was, and returns the log's
// line for it.
func (b *gitBed) refused(t *testing.T, before string, out string, ok bool, want ...string) audit.Entry {
	t.Helper()
	if ok {
		t.Errorf("ESCAPE: the push succeeded:\n%s", out)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("git push says:\n%s\nwant %q in it", out, w)
		}
	}
	if got := b.up.receivePacks(); len(got) > 0 {
		t.Errorf("ESCAPE: the upstream received %d pushes: %+v", len(got), got)
	}
	if after := b.bare.state(); after != before {
		t.Errorf("ESCAPE: the upstream changed:\n%s\nwas:\n%s", after, before)
	}
	return b.lastPushLine(t)
}

// lastPushLine is the log's last line about a push that was refused.
func (b *gitBed) lastPushLine(t *testing.T) audit.Entry {
	t.Helper()
	es := b.h.entries()
	for i := len(es) - 1; i >= 0; i-- {
		if e := es[i]; e.Git != nil && e.Git.Service == "receive-pack" && e.Decision != audit.Allow {
			return e
		}
	}
	t.Errorf("no refused push in the log")
	return audit.Entry{Git: &audit.Git{Refs: []audit.GitRef{{}}}}
}

func (b *gitBed) forget() {
	b.up.mu.Lock()
	b.up.requests = nil
	b.up.mu.Unlock()
}

func TestGitCloneAndPush(t *testing.T) {
	b := newGitBed(t)
	// The clone went through the gate with the token injected.
	if got := b.agent.git("log", "--format=%s"); got != "initial" {
		t.Fatalf("the clone has %q", got)
	}
	b.agent.git("checkout", "-q", "-b", "agent/work")
	c := b.agent.commit("work", map[string][]byte{"work.txt": []byte("done\n")})
	out, ok := b.push("origin", "agent/work")
	if !ok {
		t.Fatalf("push: %s", out)
	}
	if got := b.bare.git("rev-parse", "refs/heads/agent/work"); got != c {
		t.Fatalf("the upstream has %s, want %s", got, c)
	}
	e := b.h.waitEntry("the push's allow line", func(e audit.Entry) bool {
		return e.Git != nil && e.Git.Service == "receive-pack" && e.Decision == audit.Allow && len(e.Git.Refs) > 0
	})
	if e.Git.Repo != "acme/widgets" || e.Git.Refs[0].Ref != "refs/heads/agent/work" || e.Git.Refs[0].Old != strings.Repeat("0", 40) ||
		e.Git.Refs[0].New != c || e.Git.Objects != 3 || e.Git.PackBytes == 0 || e.Status != 200 {
		t.Errorf("the push's line: %+v %+v", e, e.Git)
	}
	// A fast-forward, with a fetch and a merge of upstream work between.
	c2 := b.agent.commit("more", map[string][]byte{"work.txt": []byte("more\n")})
	if out, ok := b.push("origin", "agent/work"); !ok {
		t.Fatalf("fast-forward: %s", out)
	}
	if got := b.bare.git("rev-parse", "refs/heads/agent/work"); got != c2 {
		t.Fatalf("the upstream has %s, want %s", got, c2)
	}
	// The pack alone told it a fast-forward: the gate fetched nothing.
	for _, e := range b.h.entries() {
		if strings.Contains(e.Reason, "own fetch into its mirror") {
			t.Errorf("a fast-forward made the gate fetch the upstream's history: %+v", e)
		}
	}
	// A new tag the route names.
	b.agent.git("tag", "-a", "v1.0", "-m", "first")
	if out, ok := b.push("origin", "v1.0"); !ok {
		t.Fatalf("tag: %s", out)
	}
	// Fetch and clone again, and the nested group's path form.
	if out, err := b.agent.run("fetch", "origin"); err != nil {
		t.Fatalf("fetch: %s", out)
	}
	again := &gitRepo{t: t, dir: t.TempDir(), env: b.agent.env}
	again.git("clone", "-q", b.url+".git", ".")
	if again.git("rev-parse", "origin/agent/work") != c2 {
		t.Error("the second clone lacks the push")
	}
	// The token never reached the agent's side: not in the clone's config,
	// nor in what git printed.
	if data, _ := os.ReadFile(filepath.Join(b.agent.dir, ".git", "config")); bytes.Contains(data, []byte(apiToken)) {
		t.Error("the token is in the agent's git config")
	}
}

func TestGitPushRefused(t *testing.T) {
	b := newGitBed(t)
	b.agent.git("checkout", "-q", "-b", "agent/x")
	b.agent.commit("x", map[string][]byte{"x.txt": []byte("x\n")})
	if out, ok := b.push("origin", "agent/x"); !ok {
		t.Fatal(out)
	}
	before := b.bare.state()
	b.forget()

	t.Run("a ref outside push", func(t *testing.T) {
		out, ok := b.push("origin", "agent/x:main")
		e := b.refused(t, before, out, ok, "[remote rejected] agent/x -> main (bb-egress: refs/heads/main is not a ref the route lets the agent push",
			"remote: bb-egress: push to git.test/acme/widgets refused; nothing was sent upstream")
		if e.Decision != audit.Deny || e.Git.Refs[0].Ref != "refs/heads/main" {
			t.Errorf("logged %+v", e)
		}
	})
	t.Run("a deletion", func(t *testing.T) {
		out, ok := b.push("origin", ":agent/x")
		b.refused(t, before, out, ok, "bb-egress: deleting refs/heads/agent/x is refused: the gate never deletes a ref")
	})
	t.Run("a force push after a rewritten history", func(t *testing.T) {
		b.agent.git("commit", "-q", "--amend", "-m", "rewritten")
		out, ok := b.push("--force", "origin", "agent/x")
		b.refused(t, before, out, ok, "not a fast-forward", "the gate refuses rewritten history")
		b.agent.git("reset", "-q", "--hard", "origin/agent/x")
	})
	t.Run("a tag the route does not name", func(t *testing.T) {
		b.agent.git("tag", "release")
		out, ok := b.push("origin", "release")
		b.refused(t, before, out, ok, "bb-egress: refs/tags/release is not a ref the route lets the agent push")
	})
	t.Run("an unlisted repository", func(t *testing.T) {
		other := fmt.Sprintf("https://git.test:%d/acme/other.git", b.up.port)
		out, ok := b.push(other, "agent/x")
		b.refused(t, before, out, ok, "remote: bb-egress: repository acme/other on git.test is not in the route's git repos (acme/widgets, group/sub/project)")
		out, err := b.agent.run("clone", other, filepath.Join(t.TempDir(), "c"))
		if err == nil || !strings.Contains(out, "repository acme/other on git.test is not in the route's git repos") {
			t.Errorf("ESCAPE: clone of an unlisted repository: %v\n%s", err, out)
		}
	})
	t.Run("the repository's other path forms", func(t *testing.T) {
		for _, p := range []string{"/ACME/widgets", "/acme/widgets.git.git", "/acme//widgets", "/acme/x/../other", "/acme/widgets.wiki"} {
			out, ok := b.push(fmt.Sprintf("https://git.test:%d%s", b.up.port, p), "agent/x:agent/y")
			if ok {
				t.Errorf("ESCAPE: push to %s: %s", p, out)
			}
		}
		if got := b.up.receivePacks(); len(got) > 0 {
			t.Errorf("ESCAPE: the upstream received %+v", got)
		}
	})
	t.Run("over plain http", func(t *testing.T) {
		out, ok := b.push(fmt.Sprintf("http://git.test:%d/acme/widgets", b.up.pport), "agent/x:agent/plain")
		if ok || !strings.Contains(out, "never sent over plain http") {
			t.Errorf("ESCAPE: %v %s", ok, out)
		}
	})
	if after := b.bare.state(); after != before {
		t.Errorf("ESCAPE: the upstream changed")
	}
}

// Every secret, in every place a push carries it, is blocked: no pack
// byte reaches the upstream, git says which secret and where, and the log
// says block, the secret's name, and canary: true for the canary.
func TestGitPushSecrets(t *testing.T) {
	b := newGitBed(t)
	b.agent.git("checkout", "-q", "-b", "agent/s")
	if out, ok := b.push("origin", "agent/s"); !ok {
		t.Fatal(out)
	}
	before := b.bare.state()
	b.forget()
	canary := b.h.canary
	gz := func(s string) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		io.WriteString(w, s)
		w.Close()
		return buf.Bytes()
	}
	bigWith := func(secret string) []byte {
		rng := rand.New(rand.NewPCG(1, 1))
		data := make([]byte, 6<<20)
		for i := range data {
			data[i] = "0123456789abcdef\n"[rng.IntN(17)]
		}
		copy(data[5<<20+777:], secret)
		return data
	}
	for _, tc := range []struct {
		name   string
		secret string
		files  map[string][]byte
		msg    string
		where  string
	}{
		{"the canary in a file", "CANARY", map[string][]byte{"notes.txt": []byte("x " + canary)}, "notes", "notes.txt of commit"},
		{"the token in a file", "API", map[string][]byte{"env": []byte("TOKEN=" + apiToken)}, "env", "env of commit"},
		{"the canary in a commit message", "CANARY", nil, "see " + canary, "in commit"},
		{"the token in a commit message", "API", nil, "token " + apiToken, "in commit"},
		{"the canary in a file name", "CANARY", map[string][]byte{"d/" + canary: []byte("x")}, "name", "a file name in d/ of commit"},
		{"the token in a file name", "API", map[string][]byte{"e/" + apiToken + ".txt": []byte("x")}, "name", "a file name in e/ of commit"},
		{"the token in a gzip'd file", "API", map[string][]byte{"t.gz": gz("t=" + apiToken)}, "gz", "t.gz of commit"},
		{"the canary in a gzip'd file", "CANARY", map[string][]byte{"c.gz": gz("c=" + canary)}, "gz", "c.gz of commit"},
		{"the token base64'd", "API", map[string][]byte{"b64": []byte(base64.StdEncoding.EncodeToString([]byte(apiToken)))}, "b64", "b64 of commit"},
		{"the canary base64'd", "CANARY", map[string][]byte{"c64": []byte(base64.StdEncoding.EncodeToString([]byte(canary)))}, "b64", "c64 of commit"},
		{"the canary deep in a large file", "CANARY", map[string][]byte{"big/data.txt": bigWith(canary)}, "big", "big/data.txt of commit"},
		{"the token deep in a large file", "API", map[string][]byte{"big/tok.txt": bigWith(apiToken)}, "big", "big/tok.txt of commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clean := map[string][]byte{}
			for i := 0; i < 30; i++ {
				clean[fmt.Sprintf("clean/%d", i)] = []byte(fmt.Sprint("clean ", i, tc.name))
			}
			b.agent.commit("clean", clean)
			c := b.agent.commit(tc.msg, tc.files)
			out, ok := b.push("origin", "agent/s")
			e := b.refused(t, before, out, ok, "secret "+tc.secret, tc.where, c[:7])
			if e.Decision != audit.Block || e.Secret != tc.secret || e.Canary != (tc.secret == "CANARY") {
				t.Errorf("logged %+v", e)
			}
			if strings.Contains(out, canary) || strings.Contains(out, apiToken) {
				t.Error("git's output carries the secret")
			}
			b.agent.git("reset", "-q", "--hard", "origin/agent/s")
		})
	}
	t.Run("the canary in a tag's message", func(t *testing.T) {
		b.agent.git("tag", "-a", "v9", "-m", "release "+canary)
		out, ok := b.push("origin", "v9")
		b.refused(t, before, out, ok, "secret CANARY", "tag object")
	})
	t.Run("the token in a tag's message", func(t *testing.T) {
		b.agent.git("tag", "-a", "v10", "-m", "release "+apiToken)
		out, ok := b.push("origin", "v10")
		b.refused(t, before, out, ok, "secret API", "tag object")
	})
	t.Run("the canary in a ref name", func(t *testing.T) {
		out, ok := b.push("origin", "agent/s:agent/"+canary)
		b.refused(t, before, out, ok)
		if strings.Contains(b.h.dump(), canary) {
			t.Error("the log carries the canary")
		}
	})
	t.Run("the token in a push option", func(t *testing.T) {
		b.agent.commit("opt", map[string][]byte{"o": []byte("o")})
		out, ok := b.push("-o", "note="+apiToken, "origin", "agent/s")
		b.refused(t, before, out, ok)
		b.agent.git("reset", "-q", "--hard", "origin/agent/s")
	})
}

// The same push through HTTP/1.1 and HTTP/2 between git and the sidecar.
func TestGitPushBothHTTPVersions(t *testing.T) {
	b := newGitBed(t)
	for i, v := range []string{"HTTP/1.1", "HTTP/2"} {
		b.agent.git("checkout", "-q", "-B", "agent/v"+strconv.Itoa(i))
		c := b.agent.commit("v", map[string][]byte{"v": []byte(v)})
		if out, err := b.agent.run("-c", "http.version="+v, "push", "origin", "agent/v"+strconv.Itoa(i)); err != nil {
			t.Fatalf("%s: %s", v, out)
		}
		if got := b.bare.git("rev-parse", "agent/v"+strconv.Itoa(i)); got != c {
			t.Errorf("%s: the upstream has %s", v, got)
		}
		out, err := b.agent.run("-c", "http.version="+v, "push", "origin", "agent/v"+strconv.Itoa(i)+":main")
		if err == nil || !strings.Contains(out, "not a ref the route lets the agent push") {
			t.Errorf("%s: %v %s", v, err, out)
		}
	}
}

// A read-only route lets the agent clone and fetch, and refuses a push at
// its first request, saying why.
func TestGitReadOnly(t *testing.T) {
	b := newGitBed(t)
	ro := strings.Replace(gitRoutes, `    push: ["refs/heads/agent/*", "refs/tags/v*"]`+"\n", "", 1)
	ro = strings.ReplaceAll(strings.ReplaceAll(ro, "{{GITPLAIN}}", strconv.Itoa(b.up.pport)), "{{GIT}}", strconv.Itoa(b.up.port))
	b.h.writeRoutes(ro)
	if err := b.h.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	before := b.bare.state()
	if out, err := b.agent.run("fetch", "origin"); err != nil {
		t.Fatalf("fetch: %s", out)
	}
	b.agent.git("checkout", "-q", "-b", "agent/ro")
	b.agent.commit("ro", nil)
	out, ok := b.push("origin", "agent/ro")
	if ok || !strings.Contains(out, "pushes to acme/widgets on git.test are refused: the route's git lists no refs to push (read-only)") {
		t.Errorf("ESCAPE or unclear: %v\n%s", ok, out)
	}
	if b.bare.state() != before {
		t.Error("ESCAPE: the upstream changed")
	}
}

// Raw requests a hostile agent can write by hand: a thin pack, a
// malformed stream, a second pack after the first, git's probe.
func TestGitRawPushes(t *testing.T) {
	b := newGitBed(t)
	b.agent.git("checkout", "-q", "-b", "agent/raw")
	lines := make([]string, 300)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d of a file that is long enough to be deltified", i)
	}
	base := b.agent.commit("base", map[string][]byte{"big.txt": []byte(strings.Join(lines, "\n"))})
	if out, ok := b.push("origin", "agent/raw"); !ok {
		t.Fatal(out)
	}
	before := b.bare.state()
	b.forget()
	c := b.h.client(false)
	post := func(body []byte) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", b.url+".git/git-receive-pack", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/x-git-receive-pack-request")
		st, resp, _ := b.h.do(c, req)
		return st, resp
	}
	thin := func(secret string) ([]byte, string) {
		l := slices.Clone(lines)
		l[150] = "changed " + secret
		nu := b.agent.commit("change", map[string][]byte{"big.txt": []byte(strings.Join(l, "\n"))})
		cmd := exec.Command("git", "pack-objects", "--stdout", "--revs", "--thin", "--delta-base-offset", "-q")
		cmd.Dir, cmd.Env = b.agent.dir, gitEnv(b.agent.dir)
		cmd.Stdin = strings.NewReader(nu + "\n^" + base + "\n")
		pack, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		b.agent.git("reset", "-q", "--hard", base)
		line := base + " " + nu + " refs/heads/agent/raw\x00report-status side-band-64k ofs-delta\n"
		return append(append([]byte(fmt.Sprintf("%04x%s", len(line)+4, line)), "0000"...), pack...), nu
	}
	t.Run("a thin pack with the canary in a delta", func(t *testing.T) {
		body, _ := thin(b.h.canary)
		st, resp := post(body)
		if st != 200 || !strings.Contains(resp, "ng refs/heads/agent/raw bb-egress: secret CANARY") || !strings.Contains(resp, "big.txt of commit") {
			t.Errorf("%d %q", st, resp)
		}
		if len(b.up.receivePacks()) > 0 || b.bare.state() != before {
			t.Error("ESCAPE: the upstream received the thin pack")
		}
	})
	t.Run("a clean thin pack", func(t *testing.T) {
		body, nu := thin("nothing secret")
		st, resp := post(body)
		if st != 200 || !strings.Contains(resp, "ok refs/heads/agent/raw") {
			t.Fatalf("%d %q", st, resp)
		}
		if got := b.bare.git("rev-parse", "agent/raw"); got != nu {
			t.Errorf("the upstream has %s, want %s", got, nu)
		}
		before = b.bare.state()
		b.forget()
	})
	head := b.bare.git("rev-parse", "agent/raw")
	pkt := func(s string) string { return fmt.Sprintf("%04x%s", len(s)+4, s) }
	update := pkt(head + " " + strings.Repeat("1", 40) + " refs/heads/agent/raw\x00report-status\n")
	for _, tc := range []struct {
		name string
		body string
		want string
	}{
		{"a malformed pkt-line", "00zz" + head, "malformed pkt-line stream: bad length"},
		{"a truncated packet", "0100" + head, "the stream ends inside a packet"},
		{"no flush", update, "the command list has no flush"},
		{"a pack that does not parse", update + "0000PACK\x00\x00\x00\x02\x00\x00\x00\x05garbage and more garbage", "the pack does not parse"},
		{"a pack whose count lies", update + "0000PACK\x00\x00\x00\x02\x00\x00\x00\x00" + strings.Repeat("\x00", 20), "the pack does not parse"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, resp := post([]byte(tc.body))
			if !strings.Contains(resp, tc.want) {
				t.Errorf("%d %q, want %q", st, resp, tc.want)
			}
			if len(b.up.receivePacks()) > 0 || b.bare.state() != before {
				t.Error("ESCAPE: the upstream received it")
			}
		})
	}
	t.Run("git's probe goes through", func(t *testing.T) {
		st, _ := post([]byte("0000"))
		if st != 200 {
			t.Errorf("the probe: %d", st)
		}
		b.up.mu.Lock()
		defer b.up.mu.Unlock()
		if n := len(b.up.requests); n == 0 || b.up.requests[n-1].bodyLen != 4 {
			t.Errorf("the upstream did not get the probe: %+v", b.up.requests)
		}
	})
	t.Run("gzip bodies are read decoded", func(t *testing.T) {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		body, _ := thin(b.h.canary)
		w.Write(body)
		w.Close()
		req, _ := http.NewRequest("POST", b.url+".git/git-receive-pack", &buf)
		req.Header.Set("Content-Encoding", "gzip")
		st, resp, _ := b.h.do(c, req)
		if !strings.Contains(resp, "secret CANARY") {
			t.Errorf("%d %q", st, resp)
		}
		req, _ = http.NewRequest("POST", b.url+".git/git-receive-pack", strings.NewReader("0000"))
		req.Header.Set("Content-Encoding", "br")
		if st, resp, _ := b.h.do(c, req); st != 415 || !strings.Contains(resp, `content-encoding "br"`) {
			t.Errorf("br: %d %q", st, resp)
		}
	})
}

// Every protocol version git speaks, for fetch (v2 is git's default) and
// for push (receive-pack has no v2; the gate asks the upstream for v0
// whatever the client said); push options and atomic pushes go through as
// they would direct.
func TestGitProtocolVersionsAndOptions(t *testing.T) {
	b := newGitBed(t)
	for _, v := range []string{"0", "1", "2"} {
		dir := filepath.Join(t.TempDir(), "c")
		if out, err := b.agent.run("-c", "protocol.version="+v, "clone", "-q", b.url, dir); err != nil {
			t.Errorf("clone with protocol v%s: %s", v, out)
		}
		b.agent.git("checkout", "-q", "-B", "agent/p"+v)
		c := b.agent.commit("p"+v, map[string][]byte{"p": []byte(v)})
		if out, err := b.agent.run("-c", "protocol.version="+v, "push", "origin", "agent/p"+v); err != nil {
			t.Errorf("push with protocol v%s: %s", v, out)
		} else if got := b.bare.git("rev-parse", "agent/p"+v); got != c {
			t.Errorf("push with protocol v%s: the upstream has %s", v, got)
		}
	}
	b.bare.git("config", "receive.advertisePushOptions", "true")
	b.agent.git("checkout", "-q", "-B", "agent/opts")
	c := b.agent.commit("opts", map[string][]byte{"o": []byte("o")})
	if out, ok := b.push("--atomic", "-o", "ci.skip", "-o", "note=fine", "origin", "agent/opts", "agent/p0:agent/p0-copy"); !ok {
		t.Fatalf("atomic push with options: %s", out)
	}
	if got := b.bare.git("rev-parse", "agent/opts"); got != c {
		t.Errorf("the upstream has %s", got)
	}
	// Atomic: one ref refused refuses the other with it.
	b.agent.commit("more", map[string][]byte{"o": []byte("more")})
	before := b.bare.state()
	b.forget()
	out, ok := b.push("--atomic", "origin", "agent/opts", "agent/opts:main")
	b.refused(t, before, out, ok, "refs/heads/main is not a ref the route lets the agent push", "refused with the rest of the push")
}
