package gitgate

import (
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The tests here run the real git: it makes the packs, and its answers
// (verify-pack, merge-base --is-ancestor) are what the gate's must equal.

func needGit(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed")
	}
}

// gitEnv isolates git from the machine's and the user's configuration.
func gitEnv(home string) []string {
	return append(os.Environ(), "HOME="+home, "GIT_CONFIG_NOSYSTEM=1", "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.invalid",
		"GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.invalid", "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
}

type repo struct {
	t   testing.TB
	dir string
}

func newRepo(t testing.TB) *repo {
	t.Helper()
	needGit(t)
	r := &repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	return r
}

func (r *repo) run(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = gitEnv(r.dir)
	cmd.Stdin = bytes.NewReader(stdin)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, stderr.String())
	}
	return out, nil
}

func (r *repo) git(args ...string) string {
	r.t.Helper()
	out, err := r.run(nil, args...)
	if err != nil {
		r.t.Fatal(err)
	}
	return strings.TrimSpace(string(out))
}

func (r *repo) write(name string, data []byte) {
	r.t.Helper()
	p := filepath.Join(r.dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// commit writes files and commits them; it returns the commit's id.
func (r *repo) commit(msg string, files map[string][]byte) string {
	r.t.Helper()
	for name, data := range files {
		r.write(name, data)
	}
	r.git("add", "-A")
	r.git("commit", "-q", "--allow-empty", "-m", msg)
	return r.git("rev-parse", "HEAD")
}

// pack is git pack-objects --revs of revs (one a line: "new", "^old").
func (r *repo) pack(revs string, args ...string) []byte {
	r.t.Helper()
	out, err := r.run([]byte(revs+"\n"), append([]string{"pack-objects", "--stdout", "--revs", "-q"}, args...)...)
	if err != nil {
		r.t.Fatal(err)
	}
	return out
}

// gitObject is one object as git verify-pack lists it.
type gitObject struct {
	id, typ string
	size    int64
}

// verifyPack lists the objects of pack with their resolved types and
// sizes, as git reads them: indexed by git index-pack in an empty
// repository, listed by git cat-file.
func verifyPack(t testing.TB, pack []byte) map[string]gitObject {
	t.Helper()
	r := newRepo(t)
	r.run(pack, "index-pack", "--stdin") //nolint:errcheck // checked by what cat-file lists
	out := r.git("cat-file", "--batch-all-objects", "--batch-check")
	objs := map[string]gitObject{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		size, _ := strconv.ParseInt(f[2], 10, 64)
		objs[f[0]] = gitObject{id: f[0], typ: f[1], size: size}
	}
	return objs
}

// gitUpstream is an Upstream backed by a real repository: what a mirror
// of it would answer.
type gitUpstream struct {
	r       *repo
	parents int // calls of Parents
	objects int // calls of Object
}

func (u *gitUpstream) Parents(_ context.Context, id Hash) ([]Hash, bool, error) {
	u.parents++
	out, err := u.r.run(nil, "cat-file", "commit", id.String())
	if err != nil {
		return nil, false, nil
	}
	c, err := parseCommit(out)
	return c.parents, err == nil, err
}

func (u *gitUpstream) Object(_ context.Context, id Hash, w io.Writer) (uint8, bool, error) {
	u.objects++
	typ, err := u.r.run(nil, "cat-file", "-t", id.String())
	if err != nil {
		return 0, false, nil
	}
	out, err := u.r.run(nil, "cat-file", strings.TrimSpace(string(typ)), id.String())
	if err != nil {
		return 0, false, err
	}
	_, err = w.Write(out)
	t := map[string]uint8{"commit": objCommit, "tree": objTree, "blob": objBlob, "tag": objTag}[strings.TrimSpace(string(typ))]
	return t, true, err
}

// fixTrailer recomputes a hand-edited pack's trailing SHA-1.
func fixTrailer(pack []byte) []byte {
	body := pack[:len(pack)-20]
	sum := sha1.Sum(body)
	return append(append([]byte(nil), body...), sum[:]...)
}

// setCount rewrites the object count of a pack's header.
func setCount(pack []byte, n uint32) []byte {
	out := append([]byte(nil), pack...)
	binary.BigEndian.PutUint32(out[8:12], n)
	return fixTrailer(out)
}

// body makes a receive-pack request body: the commands (the first with
// caps), a flush, and the pack.
func body(caps string, cmds []Command, pack []byte) []byte {
	var b []byte
	for i, c := range cmds {
		line := c.Old + " " + c.New + " " + c.Ref
		if i == 0 && caps != "" {
			line += "\x00" + caps
		}
		b = appendPkt(b, line+"\n")
	}
	b = append(b, "0000"...)
	return append(b, pack...)
}
