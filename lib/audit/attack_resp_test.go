package audit

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestAttackRespRotationCrash: the sidecar killed (-9) between any two
// steps of a rotation (the rotation line written, the oldest file
// deleted, each rename, the new file not yet opened), then started again:
// the log verifies, every line once, the head included.
func TestAttackRespRotationCrash(t *testing.T) {
	const keep = 2
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	w, err := OpenWriter(path, Rotate{MaxSize: 2000, MaxFiles: keep})
	if err != nil {
		t.Fatal(err)
	}
	write := func(w *Writer, i int) {
		if err := w.Write(Entry{Method: "GET", Host: fmt.Sprintf("h%d.example", i), Decision: Allow, Reason: "route"}); err != nil {
			t.Fatal(err)
		}
	}
	// Fill until the log has rotated past keep files, and stop just
	// before the next rotation: S0.
	i := 0
	for ; i < 60; i++ {
		write(w, i)
	}
	snap := func() map[string][]byte {
		m := map[string][]byte{}
		for _, n := range []string{path, RotatedPath(path, 1), RotatedPath(path, 2), HeadPath(path)} {
			if b, err := os.ReadFile(n); err == nil {
				m[filepath.Base(n)] = b
			}
		}
		return m
	}
	s0 := snap()
	for ; ; i++ {
		before := len(s0["audit.jsonl"])
		write(w, i)
		s := snap()
		if len(s["audit.jsonl"]) < before {
			break // rotated
		}
		s0 = s
	}
	s1 := snap()
	w.Close()
	states := map[string]map[string][]byte{
		"rotation line written": {"audit.jsonl": s1["audit.1.jsonl"], "audit.1.jsonl": s0["audit.1.jsonl"], "audit.2.jsonl": s0["audit.2.jsonl"]},
		"oldest deleted":        {"audit.jsonl": s1["audit.1.jsonl"], "audit.1.jsonl": s0["audit.1.jsonl"]},
		"1 renamed to 2":        {"audit.jsonl": s1["audit.1.jsonl"], "audit.2.jsonl": s0["audit.1.jsonl"]},
		"current renamed to 1":  {"audit.1.jsonl": s1["audit.1.jsonl"], "audit.2.jsonl": s0["audit.1.jsonl"]},
	}
	for name, files := range states {
		d := t.TempDir()
		p := filepath.Join(d, "audit.jsonl")
		for n, b := range files {
			if b == nil {
				t.Fatalf("%s: no %s in the snapshots", name, n)
			}
			os.WriteFile(filepath.Join(d, n), b, 0o600)
		}
		os.WriteFile(HeadPath(p), s0["audit.head"], 0o600)
		w, err := OpenWriter(p, Rotate{MaxSize: 2000, MaxFiles: keep})
		if err != nil {
			t.Errorf("%s: reopening: %v", name, err)
			continue
		}
		write(w, -1)
		w.Close()
		rep, err := VerifyFile(p)
		if err != nil || !rep.OK {
			t.Errorf("%s: verify: %v %+v %+v", name, err, rep, rep.Broken)
		}
	}
}
