package detect_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"

	"github.com/bb-bottles/bb/lib/detect"
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// benchSecrets returns n 40-byte secrets shaped like API keys, git tokens,
// AWS keys and canaries.
func benchSecrets(n int) []detect.Secret {
	r := rand.New(rand.NewPCG(7, 7))
	prefixes := []string{"sk-ant-api03-", "ghp_", "AKIA", "xoxb-", "glpat-", "", "sk-proj-", "hf_"}
	var out []detect.Secret
	for i := range n {
		p := prefixes[i%len(prefixes)]
		b := []byte(p)
		for len(b) < 40 {
			b = append(b, alnum[r.IntN(len(alnum))])
		}
		if p == "" { // a canary: base64url
			raw := make([]byte, 30)
			for j := range raw {
				raw[j] = byte(r.Uint32())
			}
			b = []byte(base64.RawURLEncoding.EncodeToString(raw))
		}
		out = append(out, detect.Secret{Name: fmt.Sprintf("TOKEN_%d", i), Value: string(b)})
	}
	return out
}

var benchText = sync.OnceValue(func() []byte {
	// Traffic-like text: prose, JSON, headers, and base64 and hex blobs.
	r := rand.New(rand.NewPCG(1, 1))
	words := strings.Fields("the quick brown fox jumps over lazy dog func return error nil if for range " +
		"package import struct interface Authorization Bearer Content-Type application/json model messages " +
		"role user assistant content text tool_use input max_tokens stream true false null 200 404 https://api.example.com/v1/")
	var b strings.Builder
	b.Grow(64<<20 + 4096)
	for b.Len() < 64<<20 {
		switch r.IntN(10) {
		case 0:
			raw := make([]byte, 30+r.IntN(300))
			for i := range raw {
				raw[i] = byte(r.Uint32())
			}
			b.WriteString(`"data":"` + base64.StdEncoding.EncodeToString(raw) + `",`)
		case 1:
			raw := make([]byte, 16+r.IntN(32))
			for i := range raw {
				raw[i] = byte(r.Uint32())
			}
			b.WriteString(" sha=" + hex.EncodeToString(raw) + "\n")
		default:
			for range 5 + r.IntN(40) {
				b.WriteString(words[r.IntN(len(words))])
				b.WriteByte(' ')
			}
			b.WriteString(".\n")
		}
	}
	return []byte(b.String()[:64<<20])
})

func BenchmarkDetect(b *testing.B) {
	d := mustNew(b, benchSecrets(20))
	text := benchText()
	if h, ok := d.Find(text); ok {
		b.Fatalf("bench text has a hit: %v", h)
	}
	b.SetBytes(int64(len(text)))
	b.ResetTimer()
	for b.Loop() {
		if _, ok := d.Find(text); ok {
			b.Fatal("hit")
		}
	}
}

func BenchmarkFindAll(b *testing.B) {
	d := mustNew(b, benchSecrets(20))
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if len(d.FindAll(text)) != 0 {
			b.Fatal("hit")
		}
	}
}

func BenchmarkScanner32K(b *testing.B) {
	d := mustNew(b, benchSecrets(20))
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		sc := d.NewScanner()
		for i := 0; i < len(text); i += 32 << 10 {
			sc.Write(text[i:min(len(text), i+32<<10)])
		}
		if sc.Found() {
			b.Fatal("hit")
		}
	}
}

// BenchmarkDetectShort has one 8-byte secret: the shortest patterns, so
// the smallest stride.
func BenchmarkDetectShort(b *testing.B) {
	d := mustNew(b, append(benchSecrets(19), detect.Secret{Name: "SHORT", Value: "Qz7#kP2!"}))
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, ok := d.Find(text); ok {
			b.Fatal("hit")
		}
	}
}

// BenchmarkDetectFolded is BenchmarkDetect with a folding detector: the
// lower-cased copy of the text, then the scan.
func BenchmarkDetectFolded(b *testing.B) {
	d, err := detect.NewFolded(benchSecrets(20))
	if err != nil {
		b.Fatal(err)
	}
	text := benchText()
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, ok := d.Find(text); ok {
			b.Fatal("hit")
		}
	}
}

// BenchmarkSearchFolded is what the sidecar does with a body it reads
// whole: the folded scan of the text and of its decoded and flattened
// views.
func BenchmarkSearchFolded(b *testing.B) {
	d, err := detect.NewFolded(benchSecrets(20))
	if err != nil {
		b.Fatal(err)
	}
	text := benchText()[:1<<20]
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		if _, ok := d.Search(text); ok {
			b.Fatal("hit")
		}
	}
}

// BenchmarkGuardFlat32K is a large upload's guard: the folded scan of the
// stream and of its flattened form.
func BenchmarkGuardFlat32K(b *testing.B) {
	d, err := detect.NewFolded(benchSecrets(20))
	if err != nil {
		b.Fatal(err)
	}
	text := benchText()
	b.SetBytes(int64(len(text)))
	buf := make([]byte, 32<<10)
	for b.Loop() {
		g := d.GuardFlat(bytes.NewReader(text))
		for {
			_, err := g.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkGuardTight32K is a response's guard.
func BenchmarkGuardTight32K(b *testing.B) {
	d := mustNew(b, benchSecrets(3))
	text := benchText()
	b.SetBytes(int64(len(text)))
	buf := make([]byte, 32<<10)
	for b.Loop() {
		g := d.GuardTight(bytes.NewReader(text))
		for {
			_, err := g.Read(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				b.Fatal(err)
			}
		}
	}
}
