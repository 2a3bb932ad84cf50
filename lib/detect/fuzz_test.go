package detect_test

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/detect"
)

// encodeAs writes v the way an exfiltrating program might; around supplies
// the neighbouring bytes of a base64 blob.
func encodeAs(kind uint8, v string, around []byte) string {
	pre, post := around[:min(len(around), int(kind/16)%3)], around[min(len(around), int(kind/16)%3):]
	post = post[:min(len(post), 5)]
	blob := slices.Concat(pre, []byte(v), post)
	switch kind % 13 {
	case 1:
		return url.QueryEscape(v)
	case 2:
		return url.PathEscape(v)
	case 3:
		return lowerEscapes(url.QueryEscape(v))
	case 4:
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			b.WriteString("%" + strings.ToUpper(hex.EncodeToString([]byte{v[i]})))
		}
		return b.String()
	case 5:
		var b strings.Builder
		for i := 0; i < len(v); i++ {
			b.WriteString("%" + hex.EncodeToString([]byte{v[i]}))
		}
		return b.String()
	case 6:
		return base64.StdEncoding.EncodeToString(blob)
	case 7:
		return base64.RawStdEncoding.EncodeToString(blob)
	case 8:
		return base64.URLEncoding.EncodeToString(blob)
	case 9:
		return base64.RawURLEncoding.EncodeToString(blob)
	case 10:
		return hex.EncodeToString([]byte(v))
	case 11:
		return strings.ToUpper(hex.EncodeToString([]byte(v)))
	case 12:
		b, _ := json.Marshal(v)
		return string(b)
	}
	return v
}

func lowerEscapes(s string) string {
	b := []byte(s)
	for i := range b {
		if i >= 1 && (b[i-1] == '%' || i >= 2 && b[i-2] == '%') && 'A' <= b[i] && b[i] <= 'F' {
			b[i] += 'a' - 'A'
		}
	}
	return string(b)
}

func FuzzDetect(f *testing.F) {
	f.Add([]byte("GET /v1/messages HTTP/1.1\r\nHost: api.example.com\r\n\r\n"), "sk-ant-api03-abcdefghijklmnop", uint8(0), uint16(20), uint64(1))
	f.Add([]byte(`{"data":"aGVsbG8gd29ybGQ="}`), "ghp_R8kT2mWq9Xv4LpN7sB3cY6dZ1fH5jG0aE2uK", uint8(6+16), uint16(9), uint64(2))
	f.Add(bytes.Repeat([]byte("lorem ipsum "), 300), "p@ss/w0rd+with spaces&\"q\"", uint8(1), uint16(1000), uint64(3))
	f.Add([]byte("x"), "Zm9vYmFyYmF6cXV4", uint8(9+32), uint16(1), uint64(4))
	f.Add([]byte(""), "12345678", uint8(12), uint16(0), uint64(5))
	f.Add([]byte("aaaaaaaaaaaaaaaaaaaa"), "aaaaaaaa", uint8(0), uint16(3), uint64(6))
	f.Fuzz(func(t *testing.T, noise []byte, secret string, kind uint8, pos uint16, seed uint64) {
		if len(secret) < detect.MinLen {
			secret += "#pad-to-min"[:detect.MinLen-len(secret)]
		}
		secret = secret[:min(len(secret), 200)]
		noise = noise[:min(len(noise), 4000)]
		d := mustNew(t, []detect.Secret{{Name: "S", Value: secret}})

		at := int(pos) % (len(noise) + 1)
		enc := encodeAs(kind, secret, noise[at:])
		text := slices.Concat(noise[:at], []byte(enc), noise[at:])

		all := d.FindAll(text)
		if !slices.ContainsFunc(all, func(h detect.Hit) bool {
			return h.Secret == "S" && h.Offset >= int64(at) && h.Offset < int64(at+len(enc))
		}) {
			t.Fatalf("kind %d: secret %q written as %q at %d not found; hits %v", kind%13, secret, enc, at, all)
		}
		first, ok := d.Find(text)
		if !ok || first != all[0] {
			t.Errorf("Find = %v, %v; want FindAll's first %v", first, ok, all[0])
		}

		r := rand.New(rand.NewPCG(seed, seed>>32))
		sc := d.NewScanner()
		for rest := text; len(rest) > 0; {
			n := min(len(rest), 1+r.IntN(2*d.MaxLen()+1))
			sc.Write(rest[:n])
			rest = rest[n:]
		}
		if diff := cmp.Diff(all, sc.Hits()); diff != "" {
			t.Errorf("Scanner in chunks (-FindAll +Scanner):\n%s", diff)
		}

		out, err := io.ReadAll(&chunkReader{r: d.Guard(&chunkReader{r: bytes.NewReader(text), rnd: r}), rnd: r})
		var he *detect.HitError
		if !errors.As(err, &he) || !slices.Contains(all, he.Hit) {
			t.Fatalf("Guard: got %v, want one of %v", err, all)
		}
		if int64(len(out)) > all[0].Offset {
			t.Errorf("Guard released %d bytes, past the first match at %d", len(out), all[0].Offset)
		}
		out, err = io.ReadAll(&chunkReader{r: d.GuardTight(&chunkReader{r: bytes.NewReader(text), rnd: r}), rnd: r})
		if !errors.As(err, &he) || !slices.Contains(all, he.Hit) {
			t.Fatalf("GuardTight: got %v, want one of %v", err, all)
		}
		if int64(len(out)) > all[0].Offset {
			t.Errorf("GuardTight released %d bytes, past the first match at %d", len(out), all[0].Offset)
		}
		// Folded, the secret is found upper-cased too.
		fd, err := detect.NewFolded([]detect.Secret{{Name: "S", Value: secret}})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := fd.Find(upperASCII(text)); !ok {
			t.Errorf("NewFolded: %q upper-cased not found", enc)
		}
	})
}

func upperASCII(b []byte) []byte {
	out := bytes.Clone(b)
	for i, c := range out {
		if 'a' <= c && c <= 'z' {
			out[i] = c - 'a' + 'A'
		}
	}
	return out
}

// chunkReader reads at most a random few bytes at a time.
type chunkReader struct {
	r   io.Reader
	rnd *rand.Rand
}

func (c *chunkReader) Read(p []byte) (int, error) {
	return c.r.Read(p[:min(len(p), 1+c.rnd.IntN(300))])
}
