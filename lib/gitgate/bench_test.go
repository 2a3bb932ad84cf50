package gitgate

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// manyCommits is a repository of n small commits, made with git
// fast-import, and its pack.
func manyCommits(b testing.TB, n int) (*repo, string, []byte) {
	r := newRepo(b)
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
	cmd.Dir, cmd.Env, cmd.Stdin = r.dir, gitEnv(r.dir), &s
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("%v %s", err, out)
	}
	head := r.git("rev-parse", "main")
	return r, head, r.pack(head, "--delta-base-offset")
}

// BenchmarkCheckManyCommits is the gate's whole judgement of a push of
// 5,000 small commits: every object resolved, hashed and scanned.
func BenchmarkCheckManyCommits(b *testing.B) {
	_, head, pack := manyCommits(b, 5000)
	body := body(caps, []Command{create("refs/heads/agent/x", head)}, pack)
	g := testGate(b, nil)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		v, err := g.Check(context.Background(), bytes.NewReader(body), int64(len(body)))
		if err != nil || v.Refusal != nil {
			b.Fatal(err, v.Refusal)
		}
	}
}

// largeRepo is a repository of mb MB of files, as scripts/benchgit makes
// it (source-like text, one file in ten random bytes), and its pack.
func largeRepo(b testing.TB, mb int) (string, []byte) {
	r := newRepo(b)
	rng := rand.New(rand.NewPCG(1, 2))
	words := strings.Fields("func return if else for range struct type interface map string int error nil true false package import var const")
	total := 0
	for i := 0; total < mb<<20; i++ {
		var f bytes.Buffer
		if i%10 == 9 {
			data := make([]byte, 1<<20)
			for j := range data {
				data[j] = byte(rng.Uint32())
			}
			f.Write(data)
		} else {
			for f.Len() < 256<<10 {
				for k := 0; k < 12; k++ {
					f.WriteString(words[rng.IntN(len(words))])
					f.WriteByte(' ')
				}
				fmt.Fprintf(&f, "%d\n", rng.Uint64())
			}
		}
		r.write(fmt.Sprintf("pkg%02d/file%04d.txt", i%20, i), f.Bytes())
		total += f.Len()
	}
	head := r.commit("large", nil)
	return head, r.pack(head, "--delta-base-offset")
}

// BenchmarkCheckLarge is the gate's judgement of a push of a 60 MB
// repository.
func BenchmarkCheckLarge(b *testing.B) {
	head, pack := largeRepo(b, 60)
	body := body(caps, []Command{create("refs/heads/agent/x", head)}, pack)
	g := testGate(b, nil)
	b.SetBytes(int64(len(body)))
	b.ResetTimer()
	for b.Loop() {
		v, err := g.Check(context.Background(), bytes.NewReader(body), int64(len(body)))
		if err != nil || v.Refusal != nil {
			b.Fatal(err, v.Refusal)
		}
	}
}
