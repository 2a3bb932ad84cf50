package gitgate

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/adler32"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/go-git/go-git/v5/plumbing/format/packfile"
)

// readAll reads pack with every limit at its default, visiting nothing,
// and returns what the gate made of each object, by id.
func readAll(t testing.TB, pack []byte, up Upstream, lim *Limits) (map[string]gitObject, error) {
	t.Helper()
	if lim == nil {
		lim = &Limits{}
	}
	lim.SetDefaults()
	st, err := newStore(t.TempDir(), lim.MaxResolved)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var ext externalFunc
	if up != nil {
		ext = up.Object
	}
	p, err := readPack(context.Background(), bytes.NewReader(pack), func() (int64, error) { return int64(len(pack)), nil }, st, lim, discardVisit, ext)
	if err != nil {
		return nil, err
	}
	got := map[string]gitObject{}
	for _, e := range p.entries {
		id := e.hash.String()
		got[id] = gitObject{id: id, typ: typeName(e.rtyp), size: e.rsize}
	}
	return got, nil
}

// history makes a repository whose files change a little in every commit,
// so that git packs them as chains of deltas.
func history(t testing.TB, commits int) (*repo, []string) {
	r := newRepo(t)
	rng := rand.New(rand.NewPCG(1, 2))
	lines := make([]string, 400)
	for i := range lines {
		lines[i] = fmt.Sprintf("line %d of a file that changes a little at a time %d", i, rng.IntN(1000))
	}
	var ids []string
	for c := 0; c < commits; c++ {
		for k := 0; k < 3; k++ {
			lines[rng.IntN(len(lines))] = fmt.Sprintf("changed in commit %d: %d", c, rng.IntN(1<<30))
		}
		ids = append(ids, r.commit(fmt.Sprintf("commit %d", c), map[string][]byte{
			"a.txt":     []byte(strings.Join(lines, "\n")),
			"dir/b.txt": []byte(strings.Join(lines[c%50:], "\n")),
		}))
	}
	return r, ids
}

// TestPackMatchesGit: every object of packs git makes — deltas of deltas
// by offset and by id — resolves to the id, type and size git's own
// verify-pack gives it.
func TestPackMatchesGit(t *testing.T) {
	r, ids := history(t, 30)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"ofs deltas", []string{"--delta-base-offset", "--depth=50", "--window=50"}},
		{"ref deltas", []string{"--depth=50", "--window=50"}}, // without --delta-base-offset git writes REF deltas
		{"deep chains", []string{"--delta-base-offset", "--depth=4095", "--window=250"}},
		{"no deltas", []string{"--depth=0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pack := r.pack(ids[len(ids)-1], tc.args...)
			want := verifyPack(t, pack)
			got, err := readAll(t, pack, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("%d objects, git has %d", len(got), len(want))
			}
			for id, w := range want {
				if g, ok := got[id]; !ok || g != w {
					t.Errorf("object %s: got %+v, git %+v", id, g, w)
				}
			}
		})
	}
}

// A thin pack's deltas are based on objects it does not carry: refused
// without a view of the upstream, resolved with one.
func TestThinPack(t *testing.T) {
	r, ids := history(t, 6)
	pack := r.pack(ids[5]+"\n^"+ids[4], "--thin", "--delta-base-offset")
	if _, err := readAll(t, pack, nil, nil); err == nil || !strings.Contains(err.Error(), "is not in the pack (a thin pack)") {
		t.Fatalf("without an upstream: %v", err)
	}
	up := &gitUpstream{r: r}
	got, err := readAll(t, pack, up, nil)
	if err != nil {
		t.Fatal(err)
	}
	if up.objects == 0 {
		t.Fatal("the pack was not thin: no base was asked for")
	}
	// What git makes of the same pack once it is thickened.
	fixed, err := r.run(pack, "index-pack", "--stdin", "--fix-thin", "-v")
	if err != nil {
		t.Fatal(err)
	}
	_ = fixed
	for id, g := range got {
		typ := r.git("cat-file", "-t", id)
		size := r.git("cat-file", "-s", id)
		if g.typ != typ || fmt.Sprint(g.size) != size {
			t.Errorf("object %s: got %+v, git %s %s", id, g, typ, size)
		}
	}
}

// Everything in a pack that git would refuse is refused, with what went
// wrong, and nothing after the trailer goes by.
func TestPackRefused(t *testing.T) {
	r, ids := history(t, 3)
	pack := r.pack(ids[2], "--delta-base-offset")
	n := uint32(len(verifyPack(t, pack)))
	flip := func(off int) []byte {
		b := append([]byte(nil), pack...)
		b[off] ^= 0x40
		return fixTrailer(b)
	}
	for _, tc := range []struct {
		name string
		pack []byte
		lim  Limits
		want string
	}{
		{"empty", nil, Limits{}, "empty packfile"},
		{"not a pack", append([]byte("KCAP"), pack[4:]...), Limits{}, "malformed pack file signature"},
		{"version 4", fixTrailer(append([]byte("PACK\x00\x00\x00\x04"), pack[8:]...)), Limits{}, "unsupported packfile version 4"},
		{"a count one too many", setCount(pack, n+1), Limits{}, ""},
		{"a count one too few", setCount(pack, n-1), Limits{}, ""},
		{"a count beyond its bytes", setCount(pack, 1<<30), Limits{MaxObjects: 1 << 31}, "object"},
		{"a second pack after it", append(append([]byte(nil), pack...), pack...), Limits{}, "follow the pack's trailer"},
		{"a byte after it", append(append([]byte(nil), pack...), 0), Limits{}, "1 bytes follow the pack's trailer"},
		{"cut short", pack[:len(pack)-30], Limits{}, ""},
		{"a bad trailer", append(append([]byte(nil), pack[:len(pack)-1]...), pack[len(pack)-1]^1), Limits{}, "checksum mismatch"},
		{"a flipped byte in the middle", flip(len(pack) / 2), Limits{}, ""},
		{"more objects than allowed", pack, Limits{MaxObjects: 2}, "over the gate's 2"},
		{"an object over the cap", pack, Limits{MaxObject: 100}, "over the gate's 100 per object"},
		{"more resolved than allowed", pack, Limits{MaxResolved: 1000}, "more than the gate's 1000 bytes"},
		{"a commit over the meta cap", pack, Limits{MaxMeta: 10}, "over the gate's 10 for commits, trees and tags"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := readAll(t, tc.pack, nil, &tc.lim)
			if err == nil {
				t.Fatal("taken")
			}
			var pe *PackError
			var le *LimitError
			if !errors.As(err, &pe) && !errors.As(err, &le) {
				t.Errorf("%v is neither a pack error nor a limit", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not say %q", err, tc.want)
			}
		})
	}
	// The count one too few leaves a whole object after what was read:
	// that is trailing data, and what git would read is unknown.
}

// Version 3 is version 2 under another number: git reads both.
func TestPackVersion3(t *testing.T) {
	r, ids := history(t, 3)
	pack := r.pack(ids[2], "--delta-base-offset")
	v3 := fixTrailer(append([]byte("PACK\x00\x00\x00\x03"), pack[8:]...))
	got, err := readAll(t, v3, nil, nil)
	if err != nil || len(got) != len(verifyPack(t, v3)) {
		t.Errorf("%d objects, %v", len(got), err)
	}
}

// A delta chain deeper than the limit is refused, not recursed into.
func TestDeltaChainDepth(t *testing.T) {
	r, ids := history(t, 40)
	pack := r.pack(ids[39], "--depth=4095", "--window=250")
	if _, err := readAll(t, pack, nil, &Limits{MaxDepth: 2}); err == nil {
		// REF deltas may resolve in an order that never recurses: only
		// a chain read again from its end goes deep. Either is fine, as
		// long as every object is right (TestPackMatchesGit).
		t.Log("no deep recursion needed")
	} else if !strings.Contains(err.Error(), "deeper than") {
		t.Errorf("error %v", err)
	}
}

// The delta applier agrees with go-git's in-memory one on deltas go-git
// computes, and refuses what git's patch_delta refuses.
func TestDeltaReader(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 200; i++ {
		base := make([]byte, rng.IntN(200_000))
		for j := range base {
			base[j] = byte('a' + rng.IntN(4))
		}
		target := append([]byte(nil), base...)
		for k := 0; k < rng.IntN(20); k++ {
			if len(target) == 0 {
				break
			}
			at := rng.IntN(len(target))
			ins := bytes.Repeat([]byte{byte('A' + rng.IntN(26))}, rng.IntN(300))
			end := min(len(target), at+rng.IntN(500))
			target = append(append(append([]byte(nil), target[:at]...), ins...), target[end:]...)
		}
		delta := packfile.DiffDelta(base, target)
		want, err := packfile.PatchDelta(base, delta)
		if err != nil || !bytes.Equal(want, target) {
			t.Fatalf("go-git's own delta does not apply: %v", err)
		}
		dr, err := newDeltaReader(bytes.NewReader(delta), newWindowReaderAt(bytes.NewReader(base), int64(len(base)), make([]byte, 4096)), int64(len(base)), nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(dr)
		if err != nil || !bytes.Equal(got, target) {
			t.Fatalf("delta %d: %v; %d bytes, want %d", i, err, len(got), len(target))
		}
	}
	base := []byte("0123456789")
	for name, delta := range map[string][]byte{
		"wrong source size":   {9, 1, 1, 'x'},
		"opcode 0":            {10, 1, 0},
		"copy outside base":   {10, 5, 0x91, 8, 5},
		"copy past target":    {10, 2, 0x90, 5},
		"insert past target":  {10, 1, 2, 'a', 'b'},
		"data after target":   {10, 1, 1, 'x', 1, 'y'},
		"ends before target":  {10, 3, 1, 'x'},
		"insert cut short":    {10, 3, 3, 'x'},
		"header cut short":    {0x8a},
		"size over 2^63":      {10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
		"copy offset too far": {10, 1, 0x9f, 0xff, 0xff, 0xff, 0xff, 1},
	} {
		dr, err := newDeltaReader(bytes.NewReader(delta), bytes.NewReader(base), int64(len(base)), nil)
		if err == nil {
			_, err = io.ReadAll(dr)
		}
		if !errors.Is(err, errDelta) {
			t.Errorf("%s: %v, want an invalid delta", name, err)
		}
	}
}

// Every limit takes what is at it and refuses one more.
func TestLimitsAtTheEdge(t *testing.T) {
	r := newRepo(t)
	c0 := r.commit("base", map[string][]byte{"README": []byte("hello\n")})
	c1 := r.commit("one", map[string][]byte{"a": bytes.Repeat([]byte("x"), 5000), "b": []byte("small")})
	pack := r.pack(c1+"\n^"+c0, "--depth=0")
	objs := verifyPack(t, pack)
	var biggest, total int64
	for _, o := range objs {
		biggest = max(biggest, o.size)
		total += o.size
	}
	n := len(objs)
	for _, tc := range []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"objects at the limit", Limits{MaxObjects: n}, true},
		{"one object more", Limits{MaxObjects: n - 1}, false},
		{"an object at the limit", Limits{MaxObject: biggest}, true},
		{"an object one byte over", Limits{MaxObject: biggest - 1}, false},
		{"resolved at the limit", Limits{MaxResolved: total}, true},
		{"resolved one byte over", Limits{MaxResolved: total - 1}, false},
	} {
		_, err := readAll(t, pack, nil, &tc.lim)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The pack's own size and the push's head.
	cmds := []Command{create("refs/heads/agent/x", c1)}
	b := body(caps, cmds, pack)
	for _, tc := range []struct {
		name string
		lim  Limits
		ok   bool
	}{
		{"a pack at the limit", Limits{MaxPack: int64(len(pack))}, true},
		{"a pack one byte over", Limits{MaxPack: int64(len(pack)) - 1}, false},
		{"commands at the limit", Limits{MaxCommands: 1}, true},
		{"head text at the limit", Limits{MaxText: len(ZeroID + " " + c1 + " refs/heads/agent/x\x00" + caps + "\n")}, true},
		{"head text one byte over", Limits{MaxText: len(ZeroID+" "+c1+" refs/heads/agent/x\x00"+caps+"\n") - 1}, false},
	} {
		g := testGate(t, nil)
		g.Limits = tc.lim
		v := check(t, g, b)
		if (v.Refusal == nil) != tc.ok {
			t.Errorf("%s: %+v", tc.name, v.Refusal)
		}
	}
	two := body(caps, append(cmds, create("refs/heads/agent/y", c1)), pack)
	g := testGate(t, nil)
	g.Limits = Limits{MaxCommands: 1}
	if v := check(t, g, two); v.Refusal == nil || !strings.Contains(v.Refusal.Reason, "more than 1 refs") {
		t.Errorf("one command over: %+v", v.Refusal)
	}
}

// A zlib stream that refers back before its own start (deflate written
// against a preset dictionary, with no FDICT flag) is refused, as git's
// inflate refuses it: the gate never reads content git would not.
func TestZlibReferringBeforeItsStart(t *testing.T) {
	content := []byte("a secret would sit in a dictionary nobody else has: a secret would sit")
	var raw bytes.Buffer
	fw, _ := flate.NewWriterDict(&raw, flate.BestCompression, content)
	fw.Write(content)
	fw.Close()
	var z bytes.Buffer
	z.Write([]byte{0x78, 0xda}) // zlib, no FDICT
	z.Write(raw.Bytes())
	var sum [4]byte
	binary.BigEndian.PutUint32(sum[:], adler32.Checksum(content))
	z.Write(sum[:])
	hdr := []byte{byte(objBlob<<4) | byte(len(content)&15) | 0x80, byte(len(content) >> 4)}
	pack := append([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01"), hdr...)
	pack = append(pack, z.Bytes()...)
	pack = fixTrailer(append(pack, make([]byte, 20)...))
	if _, err := readAll(t, pack, nil, nil); err == nil {
		t.Fatal("taken")
	}
	// git refuses it too.
	r := newRepo(t)
	if _, err := r.run(pack, "index-pack", "--stdin"); err == nil {
		t.Error("git took it: the test's stream is not what it means to be")
	}
}
