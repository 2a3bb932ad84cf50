package gitgate

import (
	"bytes"
	"context"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
)

// gitServer serves the bare repository of r over smart HTTP with git's own
// http-backend, as a forge would, and counts the requests it answers.
type gitServer struct {
	*httptest.Server
	bare     *repo
	requests atomic.Int64
}

func newGitServer(t testing.TB, r *repo) *gitServer {
	t.Helper()
	backend := "/usr/lib/git-core/git-http-backend"
	if _, err := os.Stat(backend); err != nil {
		t.Skip("git-http-backend is not installed")
	}
	root := t.TempDir()
	bare := &repo{t: t, dir: filepath.Join(root, "acme", "widgets.git")}
	if err := os.MkdirAll(bare.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bare.git("init", "-q", "--bare")
	bare.git("config", "http.receivepack", "true")
	bare.git("config", "uploadpack.allowFilter", "true")
	r.git("push", "-q", bare.dir, "+refs/heads/*:refs/heads/*")
	s := &gitServer{bare: bare}
	h := &cgi.Handler{Path: backend, Env: append(gitEnv(root), "GIT_PROJECT_ROOT="+root, "GIT_HTTP_EXPORT_ALL=1")}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.requests.Add(1)
		h.ServeHTTP(w, req)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *gitServer) url() string { return s.URL + "/acme/widgets.git" }

// The mirror fetches the upstream's history once, when a push first needs
// it, answers as git does from it, keeps it for the next push and the
// next run, and fetches again only what is new.
func TestMirror(t *testing.T) {
	r, ids := history(t, 8)
	srv := newGitServer(t, r)
	dir := t.TempDir()
	m := &Mirror{Dir: dir, Client: srv.Client()}
	ctx := context.Background()
	s, err := m.Session(srv.url())
	if err != nil {
		t.Fatal(err)
	}
	parents, ok, err := s.Parents(ctx, hashOf(ids[5]))
	if err != nil || !ok || len(parents) != 1 || parents[0] != hashOf(ids[4]) {
		t.Fatalf("Parents = %v %v %v, want %s", parents, ok, err, ids[4])
	}
	if srv.requests.Load() != 2 {
		t.Errorf("%d requests for the history, want 2 (the refs and one fetch)", srv.requests.Load())
	}
	// Commits only were fetched (the upstream takes filters): a blob
	// needs a second fetch, once.
	blob := r.git("rev-parse", ids[3]+":a.txt")
	var buf bytes.Buffer
	typ, ok, err := s.Object(ctx, hashOf(blob), &buf)
	if err != nil || !ok || typ != objBlob || buf.String() != r.git("cat-file", "blob", blob)+"\n" && buf.String() != r.git("cat-file", "blob", blob) {
		t.Fatalf("Object = %d %v %v, %d bytes", typ, ok, err, buf.Len())
	}
	n := srv.requests.Load()
	if _, ok, _ := s.Parents(ctx, hashOf(strings.Repeat("ab", 20))); ok {
		t.Error("a commit nobody has was found")
	}
	if srv.requests.Load() != n {
		t.Error("a session fetched twice")
	}
	s.Close()
	m.Close()

	// A new run finds the packs; a commit the upstream got since is
	// fetched, with what the mirror has said as haves.
	c9 := r.commit("nine", map[string][]byte{"a.txt": []byte("nine")})
	r.git("push", "-q", srv.bare.dir, "main")
	m2 := &Mirror{Dir: dir, Client: srv.Client()}
	defer m2.Close()
	s2, _ := m2.Session(srv.url())
	defer s2.Close()
	before := srv.requests.Load()
	if p, ok, err := s2.Parents(ctx, hashOf(ids[2])); err != nil || !ok || p[0] != hashOf(ids[1]) {
		t.Fatalf("from the kept packs: %v %v %v", p, ok, err)
	}
	if srv.requests.Load() != before {
		t.Error("a kept commit was fetched again")
	}
	if p, ok, err := s2.Parents(ctx, hashOf(c9)); err != nil || !ok || p[0] != hashOf(ids[7]) {
		t.Fatalf("a new commit: %v %v %v", p, ok, err)
	}
	packs, _ := filepath.Glob(filepath.Join(dir, "pack-*.pack"))
	if len(packs) != 3 {
		t.Errorf("%d packs, want 3", len(packs))
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, "tmp-*")); len(tmp) != 0 {
		t.Errorf("scratch files left: %v", tmp)
	}
}

// The gate, with a mirror of a real upstream, decides a push git would
// call a fast-forward only through commits the pack does not hold.
func TestCheckWithMirror(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"a": []byte("0")})
	r.git("branch", "agent/x")
	c1 := r.commit("main moves", map[string][]byte{"b": []byte("1")})
	srv := newGitServer(t, r)
	r.git("checkout", "-q", "agent/x")
	r.git("merge", "-q", "--no-edit", "main")
	r.commit("on top", map[string][]byte{"c": []byte("2")})
	head := r.git("rev-parse", "HEAD")
	// The pack holds the new commits; c1, through which c0 is reached
	// from the merge's second line, is upstream only.
	m := &Mirror{Dir: t.TempDir(), Client: srv.Client()}
	defer m.Close()
	s, _ := m.Session(srv.url())
	defer s.Close()
	g := testGate(t, s)
	pack := r.pack(head + "\n^" + c1 + "\n^" + c0)
	v := check(t, g, body(caps, []Command{{Old: c0, New: head, Ref: "refs/heads/agent/x"}}, pack))
	if v.Refusal != nil {
		t.Fatalf("refused: %+v", v.Refusal)
	}
	// And a rewrite is refused, with the mirror's word for it.
	r.git("checkout", "-q", "--detach", c1)
	other := r.commit("elsewhere", map[string][]byte{"d": []byte("3")})
	v = check(t, g, body(caps, []Command{{Old: head, New: other, Ref: "refs/heads/agent/x"}}, r.pack(other+"\n^"+c1)))
	if v.Refusal == nil || !strings.Contains(v.Refusal.Reason, "not a fast-forward") {
		t.Fatalf("a rewrite: %+v", v.Refusal)
	}
}
