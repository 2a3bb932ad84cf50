package gitgate

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/routes"
)

const (
	testCanary = "cAnArY-0123456789abcdefghijklmnopqrstuvwxyzAB"
	testToken  = "ghp_R8kT2mWq9Xv4LpN7sB3cY6dZ1fH5jG0aE2uK"
)

func testDetector(t testing.TB) *detect.Detector {
	t.Helper()
	d, err := detect.NewFolded([]detect.Secret{{Name: "CANARY", Value: testCanary}, {Name: "GITHUB", Value: testToken}})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func testGate(t testing.TB, up Upstream, push ...string) *Gate {
	if push == nil {
		push = []string{"refs/heads/agent/*", "refs/tags/v*"}
	}
	return &Gate{Detector: testDetector(t), Git: &routes.Git{Repos: []string{"acme/widgets"}, Push: push},
		Repo: "acme/widgets", Dir: t.TempDir(), Upstream: up}
}

func check(t testing.TB, g *Gate, b []byte) *Verdict {
	t.Helper()
	v, err := g.Check(context.Background(), bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

const caps = "report-status side-band-64k ofs-delta agent=git/2.39.5"

func create(ref, id string) Command { return Command{Old: ZeroID, New: id, Ref: ref} }

// The pushes the gate lets through.
func TestCheckAllowed(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a.txt": []byte("one\n")})
	c2 := r.commit("two", map[string][]byte{"a.txt": []byte("two\n")})
	g := testGate(t, &gitUpstream{r: r})
	for _, tc := range []struct {
		name string
		cmds []Command
		pack []byte
	}{
		{"a new branch", []Command{create("refs/heads/agent/x", c2)}, r.pack(c2 + "\n^" + c0)},
		{"a fast-forward", []Command{{Old: c1, New: c2, Ref: "refs/heads/agent/x"}}, r.pack(c2 + "\n^" + c1)},
		{"a branch at a commit the upstream has", []Command{create("refs/heads/agent/y", c1)}, r.pack("^" + c1)},
		{"a new tag under refs/tags/v*", []Command{create("refs/tags/v1", c2)}, r.pack(c2 + "\n^" + c1)},
		{"two refs at once", []Command{create("refs/heads/agent/a", c2), {Old: c1, New: c2, Ref: "refs/heads/agent/b"}}, r.pack(c2 + "\n^" + c1)},
		{"upper-case ids", []Command{{Old: strings.ToUpper(c1), New: strings.ToUpper(c2), Ref: "refs/heads/agent/x"}}, r.pack(c2 + "\n^" + c1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := check(t, g, body(caps, tc.cmds, tc.pack))
			if v.Refusal != nil {
				t.Fatalf("refused: %+v", v.Refusal)
			}
			if v.Objects != len(verifyPack(t, tc.pack)) {
				t.Errorf("%d objects, git counts %d", v.Objects, len(verifyPack(t, tc.pack)))
			}
		})
	}
	// git's probe before a large push: a flush and nothing else.
	if v := check(t, g, []byte("0000")); v.Refusal != nil || !v.Update.Probe() {
		t.Errorf("the probe: %+v", v)
	}
}

// Pushes the ref policy refuses, each with its reason on its own ref and
// the rest of the push refused with it.
func TestCheckPolicy(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a.txt": []byte("one\n")})
	pack := r.pack(c1 + "\n^" + c0)
	g := testGate(t, &gitUpstream{r: r})
	for _, tc := range []struct {
		name string
		gate *Gate
		cmds []Command
		want string
	}{
		{"outside push", g, []Command{create("refs/heads/main", c1)}, "refs/heads/main is not a ref the route lets the agent push (push: refs/heads/agent/*, refs/tags/v*)"},
		{"a deletion", g, []Command{{Old: c1, New: ZeroID, Ref: "refs/heads/agent/x"}}, "deleting refs/heads/agent/x is refused: the gate never deletes a ref"},
		{"a tag not named", g, []Command{create("refs/tags/release", c1)}, "refs/tags/release is not a ref the route lets the agent push"},
		{"a tag moved", g, []Command{{Old: c0, New: c1, Ref: "refs/tags/v1"}}, "refs/tags/v1 exists: the gate never moves a tag"},
		{"a bad ref name", g, []Command{create("refs/heads/agent/a..b", c1)}, `"refs/heads/agent/a..b" is not a valid ref name`},
		{"not under refs/", g, []Command{create("HEAD", c1)}, `"HEAD" is not a valid ref name`},
		{"read-only", testGate(t, nil, []string{}...), []Command{create("refs/heads/agent/x", c1)}, "acme/widgets is read-only: its route's git lists no refs to push"},
		{"refs/* never lets a tag out", testGate(t, nil, "refs/*"), []Command{create("refs/tags/v2", c1)}, "refs/tags/v2 is not a ref the route lets the agent push"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmds := append([]Command{create("refs/heads/agent/ok", c1)}, tc.cmds...)
			v := check(t, tc.gate, body(caps, cmds, pack))
			if v.Refusal == nil {
				t.Fatal("allowed")
			}
			if !strings.Contains(v.Refusal.Reason, tc.want) {
				t.Errorf("reason %q, want %q", v.Refusal.Reason, tc.want)
			}
			ref := tc.cmds[0].Ref
			if !strings.Contains(v.Refusal.PerRef[ref], tc.want) {
				t.Errorf("ng for %s: %q", ref, v.Refusal.PerRef[ref])
			}
			if tc.name == "read-only" {
				return // every ref of the push is at fault
			}
			if _, ok := v.Refusal.PerRef["refs/heads/agent/ok"]; ok || !strings.Contains(v.Refusal.Others, "refused with the rest of the push") {
				t.Errorf("the allowed ref's reason: %q / %q", v.Refusal.PerRef["refs/heads/agent/ok"], v.Refusal.Others)
			}
		})
	}
}

// The gate's fast-forward answer is git's (merge-base --is-ancestor) for
// every pair of commits of a history with branches and merges, whether the
// commits come in the pack or only the upstream has them.
func TestFastForwardIsGits(t *testing.T) {
	r := newRepo(t)
	rng := rand.New(rand.NewPCG(5, 6))
	all := []string{r.commit("root", map[string][]byte{"f": []byte("0")})}
	for i := 0; i < 14; i++ {
		from := all[rng.IntN(len(all))]
		r.git("checkout", "-q", "--detach", from)
		if i%4 == 3 {
			other := all[rng.IntN(len(all))]
			r.git("merge", "-q", "--no-edit", "-s", "ours", "--allow-unrelated-histories", other) //nolint
			all = append(all, r.git("rev-parse", "HEAD"))
			continue
		}
		all = append(all, r.commit(fmt.Sprint("c", i), map[string][]byte{"f": []byte(fmt.Sprint(i))}))
	}
	up := &gitUpstream{r: r}
	g := testGate(t, up)
	for _, old := range all {
		for _, nu := range all {
			_, err := r.run(nil, "merge-base", "--is-ancestor", old, nu)
			want := err == nil
			got, _, err := g.isAncestor(context.Background(), hashOf(old), hashOf(nu), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("is %s an ancestor of %s: gate %v, git %v", old[:7], nu[:7], got, want)
			}
		}
	}
	// The same through whole pushes, with what the pack holds.
	for i := 0; i < 30; i++ {
		old, nu := all[rng.IntN(len(all))], all[rng.IntN(len(all))]
		if old == nu {
			continue
		}
		_, err := r.run(nil, "merge-base", "--is-ancestor", old, nu)
		want := err == nil
		v := check(t, g, body(caps, []Command{{Old: old, New: nu, Ref: "refs/heads/agent/x"}}, r.pack(nu+"\n^"+old)))
		if got := v.Refusal == nil; got != want {
			t.Errorf("push %s..%s: allowed %v, git says ancestor %v (%+v)", old[:7], nu[:7], got, want, v.Refusal)
		} else if !got && !strings.Contains(v.Refusal.Reason, "not a fast-forward") {
			t.Errorf("push %s..%s refused as %q", old[:7], nu[:7], v.Refusal.Reason)
		}
	}
}

// A force push after a rewritten history is refused; so is one the gate
// cannot decide without the upstream's history.
func TestForcePush(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"a": []byte("0")})
	c1 := r.commit("one", map[string][]byte{"a": []byte("1")})
	r.git("reset", "-q", "--hard", c0)
	c1b := r.commit("one, rewritten", map[string][]byte{"a": []byte("1b")})
	c2 := r.commit("two", map[string][]byte{"a": []byte("2")})
	pack := r.pack(c2 + "\n^" + c1)
	up := &gitUpstream{r: r}
	v := check(t, testGate(t, up), body(caps, []Command{{Old: c1, New: c2, Ref: "refs/heads/agent/x"}}, pack))
	if v.Refusal == nil || !strings.Contains(v.Refusal.PerRef["refs/heads/agent/x"], "not a fast-forward: "+c1[:7]+" is not an ancestor of "+c2[:7]) {
		t.Fatalf("force push: %+v", v.Refusal)
	}
	// Walked into the upstream's history to be sure: c0 is upstream only.
	if up.parents == 0 {
		t.Error("the upstream's history was never asked")
	}
	// Without a view of the upstream, c0's history is unknown: refused.
	v = check(t, testGate(t, nil), body(caps, []Command{{Old: c1b, New: c2, Ref: "refs/heads/agent/x"}}, r.pack(c2+"\n^"+c1b)))
	if v.Refusal != nil {
		t.Fatalf("a fast-forward decided within the pack: %+v", v.Refusal)
	}
	v = check(t, testGate(t, nil), body(caps, []Command{{Old: c0, New: c2, Ref: "refs/heads/agent/x"}}, r.pack(c2+"\n^"+c1b)))
	if v.Refusal == nil || !strings.Contains(v.Refusal.Reason, "neither in the pack nor upstream") {
		t.Fatalf("undecidable: %+v", v.Refusal)
	}
}

// Every place a secret can ride in a push, and every form the detector
// knows: refused as a block naming the secret and where it was, whatever
// else the push holds.
func TestCheckSecrets(t *testing.T) {
	big := func(secretAt int, total int) []byte {
		rng := rand.New(rand.NewPCG(7, 8))
		b := make([]byte, total)
		for i := range b {
			b[i] = "abcdefghij \n"[rng.IntN(12)]
		}
		copy(b[secretAt:], testCanary)
		return b
	}
	gz := func(b []byte) []byte {
		var buf bytes.Buffer
		w := gzip.NewWriter(&buf)
		w.Write(b)
		w.Close()
		return buf.Bytes()
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("token=" + testToken))
	wrapped := ""
	for i := 0; i < len(b64); i += 20 {
		wrapped += b64[i:min(i+20, len(b64))] + "\n"
	}
	for _, tc := range []struct {
		name   string
		files  map[string][]byte
		msg    string
		secret string
		where  string
	}{
		{"canary in a file", map[string][]byte{"src/notes.txt": []byte("see " + testCanary)}, "add notes", "CANARY", "src/notes.txt of commit"},
		{"token in a file", map[string][]byte{"cfg/env": []byte("GITHUB_TOKEN=" + testToken)}, "add env", "GITHUB", "cfg/env of commit"},
		{"canary in a commit message", map[string][]byte{"a": []byte("a")}, "fix: " + testCanary, "CANARY", "commit "},
		{"canary in a file name", map[string][]byte{"dir/" + testCanary + ".txt": []byte("x")}, "add", "CANARY", "a file name in dir/ of commit"},
		{"token in a gzip'd file", map[string][]byte{"data.gz": gz([]byte("GITHUB=" + testToken))}, "gz", "GITHUB", "data.gz of commit"},
		{"canary in a large gzip'd file", map[string][]byte{"big.gz": gz(big(3<<20, 4<<20))}, "gz", "CANARY", "big.gz of commit"},
		{"token in a base64'd file", map[string][]byte{"b64": []byte(b64)}, "b64", "GITHUB", "b64 of commit"},
		{"token in wrapped base64", map[string][]byte{"b64w": []byte(wrapped)}, "b64", "GITHUB", "b64w of commit"},
		{"canary deep in a large file", map[string][]byte{"big/file.txt": big(5<<20+12345, 6<<20)}, "big", "CANARY", "big/file.txt of commit"},
		{"canary in upper case", map[string][]byte{"x": []byte(strings.ToUpper(testCanary))}, "x", "CANARY", "x of commit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRepo(t)
			c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
			// Many clean files around it: the secret is deep in the pack.
			clean := map[string][]byte{}
			for i := 0; i < 50; i++ {
				clean[fmt.Sprintf("clean/%d.txt", i)] = []byte(fmt.Sprintf("clean file %d\n", i))
			}
			r.commit("clean", clean)
			c2 := r.commit(tc.msg, tc.files)
			r.commit("after", map[string][]byte{"later.txt": []byte("later")})
			head := r.git("rev-parse", "HEAD")
			v := check(t, testGate(t, &gitUpstream{r: r}), body(caps, []Command{create("refs/heads/agent/x", head)}, r.pack(head+"\n^"+c0)))
			if v.Refusal == nil || v.Refusal.Hit == nil {
				t.Fatalf("allowed: %+v", v.Refusal)
			}
			if v.Refusal.Hit.Secret != tc.secret {
				t.Errorf("secret %s, want %s", v.Refusal.Hit.Secret, tc.secret)
			}
			if !strings.Contains(v.Refusal.Reason, tc.where) {
				t.Errorf("reason %q does not say %q", v.Refusal.Reason, tc.where)
			}
			if tc.where != "commit " && !strings.Contains(v.Refusal.Reason, c2[:7]) {
				t.Errorf("reason %q does not name commit %s", v.Refusal.Reason, c2[:7])
			}
			for _, m := range append(v.Refusal.Messages, v.Refusal.Reason, v.Refusal.Others) {
				if _, ok := testDetector(t).SearchString(m); ok {
					t.Errorf("a message carries the secret: %q", m)
				}
			}
		})
	}
}

// A secret in a tag's message, in a ref name, in a push option.
func TestCheckSecretsOutsideFiles(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a": []byte("1")})
	r.git("tag", "-a", "v1", "-m", "release "+testCanary)
	tag := r.git("rev-parse", "v1")
	g := testGate(t, &gitUpstream{r: r})
	v := check(t, g, body(caps, []Command{create("refs/tags/v1", tag)}, r.pack(tag+"\n^"+c0)))
	if v.Refusal == nil || v.Refusal.Hit == nil || !strings.Contains(v.Refusal.Reason, "tag object "+tag[:7]) {
		t.Errorf("a tag's message: %+v", v.Refusal)
	}
	pack := r.pack(c1 + "\n^" + c0)
	v = check(t, g, body(caps, []Command{create("refs/heads/agent/"+testCanary, c1)}, pack))
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "CANARY" {
		t.Errorf("a ref name: %+v", v.Refusal)
	}
	var b []byte
	b = appendPkt(b, ZeroID+" "+c1+" refs/heads/agent/x\x00report-status push-options\n")
	b = append(b, "0000"...)
	b = appendPkt(b, "ci.skip="+base64.StdEncoding.EncodeToString([]byte(testToken))+"\n")
	b = append(append(b, "0000"...), pack...)
	v = check(t, g, b)
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "GITHUB" {
		t.Errorf("a push option: %+v", v.Refusal)
	}
}

// A secret in an object git sends as a delta of one the upstream has, in
// a thin pack the client was asked not to send: still found.
func TestCheckThinPackSecret(t *testing.T) {
	r := newRepo(t)
	lines := make([]string, 300)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d: nothing to see here at all, really nothing", i)
	}
	c0 := r.commit("base", map[string][]byte{"big.txt": []byte(strings.Join(lines, "\n"))})
	lines[150] = "token " + testToken
	c1 := r.commit("one", map[string][]byte{"big.txt": []byte(strings.Join(lines, "\n"))})
	pack := r.pack(c1+"\n^"+c0, "--thin", "--delta-base-offset")
	up := &gitUpstream{r: r}
	v := check(t, testGate(t, up), body(caps, []Command{create("refs/heads/agent/x", c1)}, pack))
	if up.objects == 0 {
		t.Fatal("git did not make a thin pack")
	}
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "GITHUB" || !strings.Contains(v.Refusal.Reason, "big.txt of commit "+c1[:7]) {
		t.Errorf("thin pack: %+v", v.Refusal)
	}
	// Without the upstream's objects, refused all the same.
	v = check(t, testGate(t, nil), body(caps, []Command{create("refs/heads/agent/x", c1)}, pack))
	if v.Refusal == nil || !strings.Contains(v.Refusal.Reason, "a thin pack") {
		t.Errorf("thin pack without an upstream: %+v", v.Refusal)
	}
}

// Heads that do not parse are refused, each saying why.
func TestCheckMalformed(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a": []byte("1")})
	pack := r.pack(c1 + "\n^" + c0)
	cmd := ZeroID + " " + c1 + " refs/heads/agent/x"
	good := body(caps, []Command{create("refs/heads/agent/x", c1)}, pack)
	g := testGate(t, nil)
	for _, tc := range []struct {
		name string
		b    []byte
		want string
	}{
		{"empty", nil, "the request body is empty"},
		{"no flush", appendPkt(nil, cmd+"\n"), "the command list has no flush"},
		{"a bad length", []byte("00zz" + cmd), "bad length"},
		{"length 3", []byte("0003"), "bad length"},
		{"length past the end", []byte("0fff" + cmd), "the stream ends inside a packet"},
		{"a packet over 65520", append([]byte("fff1"), make([]byte, 65520)...), "over git's 65520"},
		{"an empty packet", append([]byte("0004"), good...), "an empty command"},
		{"a delim packet", append([]byte("0001"), good...), "protocol v2 special packet"},
		{"a short command", append(appendPkt(nil, "abc refs/heads/x\n"), "0000"...), "expected old/new/ref"},
		{"not hex", append(appendPkt(nil, strings.Repeat("z", 40)+" "+c1+" refs/heads/agent/x\n"), "0000"...), "is not an object id"},
		{"sha-256", append(appendPkt(nil, strings.Repeat("0", 64)+" "+strings.Repeat("a", 64)+" refs/heads/agent/x\n"), "0000"...), "SHA-256"},
		{"a signed push", append(appendPkt(nil, "push-cert\x00report-status\n"), "0000"...), "signed pushes"},
		{"no pack", body(caps, []Command{create("refs/heads/agent/x", c1)}, nil), "sends no pack"},
		{"data after the probe", append([]byte("0000"), pack...), "not git's 4-byte probe"},
		{"shallow lines and no command", append(appendPkt(nil, "shallow "+c0+"\n"), "0000"...), "not git's 4-byte probe"},
		{"a new branch at an object nobody has", body(caps, []Command{create("refs/heads/agent/x", strings.Repeat("ab", 20))}, pack), "abababa is neither in the pack nor upstream"},
		{"a second pack", append(append([]byte(nil), good...), pack...), "follow the pack's trailer"},
		{"push options with no flush", append(appendPkt(nil, cmd+"\x00push-options\n"), "0000"...), "the push options have no flush"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := check(t, g, tc.b)
			if v.Refusal == nil {
				t.Fatal("allowed")
			}
			if !strings.Contains(v.Refusal.Reason, tc.want) {
				t.Errorf("reason %q, want %q", v.Refusal.Reason, tc.want)
			}
		})
	}
	// Around the pkt-line limits: 65520 is git's largest packet, taken.
	ref := "refs/heads/agent/" + strings.Repeat("x", 65520-4-82-len("refs/heads/agent/")-1)
	b := append(appendPkt(nil, ZeroID+" "+c1+" "+ref+"\n"), "0000"...)
	b = append(b, pack...)
	if v := check(t, g, b); v.Refusal != nil && !strings.Contains(v.Refusal.Reason, "not a valid ref name") && !strings.Contains(v.Refusal.Reason, "refs/heads/agent/xxx") {
		t.Errorf("a packet of 65520 bytes: %+v", v.Refusal)
	}
}

// A push refused by the ref policy is still read: a secret in it makes it
// a block, so that the log names the secret (the canary is proof of an
// attempt, whatever else is wrong with the push).
func TestPolicyRefusalStillScans(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"notes": []byte(testCanary)})
	pack := r.pack(c1 + "\n^" + c0)
	v := check(t, testGate(t, nil), body(caps, []Command{create("refs/heads/main", c1)}, pack))
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "CANARY" {
		t.Fatalf("refused as %+v", v.Refusal)
	}
	// And one with nothing wrong in its pack is refused for its ref.
	c2 := r.commit("two", map[string][]byte{"notes": []byte("fine")})
	v = check(t, testGate(t, nil), body(caps, []Command{create("refs/heads/main", c2)}, r.pack(c2+"\n^"+c1)))
	if v.Refusal == nil || v.Refusal.Hit != nil || !strings.Contains(v.Refusal.Reason, "refs/heads/main is not a ref") {
		t.Fatalf("refused as %+v", v.Refusal)
	}
}

// The gate reads a push as it arrives; a body that ends short is the
// body's error, not a verdict.
func TestCheckBodyStreams(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a": []byte(strings.Repeat("a line\n", 10000))})
	b := body(caps, []Command{create("refs/heads/agent/x", c1)}, r.pack(c1+"\n^"+c0))
	for _, short := range []bool{false, true} {
		f, err := os.CreateTemp(t.TempDir(), "spool")
		if err != nil {
			t.Fatal(err)
		}
		sp := NewSpool(f)
		go func() {
			for i := 0; i < len(b); i += 97 {
				if short && i > len(b)/2 {
					sp.Finish(errors.New("the client went away"))
					return
				}
				sp.Write(b[i:min(i+97, len(b))])
				time.Sleep(time.Microsecond)
			}
			sp.Finish(nil)
		}()
		v, err := testGate(t, nil).CheckBody(context.Background(), sp)
		if short {
			if err == nil || err.Error() != "the client went away" {
				t.Errorf("a body cut short: %v %+v", err, v)
			}
		} else if err != nil || v.Refusal != nil || v.PackBytes == 0 {
			t.Errorf("a body in pieces: %v %+v", err, v)
		}
		sp.Close()
	}
}

// A submodule's id in a tree is never checked to exist: twenty bytes of
// the agent's choosing each. A secret laid out over consecutive ones is
// found.
func TestCheckGitlinkIDs(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	tok := []byte(testToken)
	entries := fmt.Sprintf("160000 commit %x\ta\n160000 commit %x\tb\n", tok[:20], tok[20:40])
	out, err := r.run([]byte(entries), "mktree")
	if err != nil {
		t.Fatal(err)
	}
	tree := strings.TrimSpace(string(out))
	commit := r.git("commit-tree", tree, "-p", c0, "-m", "submodules")
	v := check(t, testGate(t, nil), body(caps, []Command{create("refs/heads/agent/x", commit)}, r.pack(commit+"\n^"+c0)))
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "GITHUB" || !strings.Contains(v.Refusal.Reason, "tree entry's object id") {
		t.Fatalf("refused as %+v", v.Refusal)
	}
}

// A commit nothing reaches is kept upstream without its parents checked:
// a secret laid out over its parent ids is found.
func TestCheckParentIDs(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a": []byte("1")})
	tree := r.git("rev-parse", c1+"^{tree}")
	tok := []byte(testToken)
	raw := fmt.Sprintf("tree %s\nparent %x\nparent %x\nauthor a <a@b> 0 +0000\ncommitter a <a@b> 0 +0000\n\nx\n", tree, tok[:20], tok[20:40])
	out, err := r.run([]byte(raw), "hash-object", "-t", "commit", "-w", "--stdin", "--literally")
	if err != nil {
		t.Fatal(err)
	}
	dangling := strings.TrimSpace(string(out))
	// The pack carries c1 for the ref, and the dangling commit beside it.
	pack, err := r.run([]byte(c1+"\n"+dangling+"\n"), "pack-objects", "--stdout", "-q")
	if err != nil {
		t.Fatal(err)
	}
	_ = c0
	v := check(t, testGate(t, nil), body(caps, []Command{create("refs/heads/agent/x", c1)}, pack))
	if v.Refusal == nil || v.Refusal.Hit == nil || v.Refusal.Hit.Secret != "GITHUB" {
		t.Fatalf("refused as %+v", v.Refusal)
	}
}
