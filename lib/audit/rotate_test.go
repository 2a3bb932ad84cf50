package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rotatedLog writes n lines through a writer that rotates at size bytes
// and keeps keep files; every tenth line carries the canary.
func rotatedLog(t *testing.T, n int, size int64, keep int) (path string) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := OpenWriter(path, Rotate{MaxSize: size, MaxFiles: keep})
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		e := Entry{Method: "GET", Host: fmt.Sprintf("h%d.example", i), Path: "/", Status: 200, Decision: Allow, Reason: "route"}
		if i%10 == 0 {
			e.Decision, e.Secret, e.Canary = Block, "CANARY", true
		}
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func seqsOf(t *testing.T, lines [][]byte) []uint64 {
	var out []uint64
	for _, l := range lines {
		var e Entry
		if err := json.Unmarshal(l, &e); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		out = append(out, e.Seq)
	}
	return out
}

// TestRotate: a log written past its size many times keeps its size
// bound, verifies across its files, says what rotation deleted (and how
// many canaries it held), and its head stays right.
func TestRotate(t *testing.T) {
	path := rotatedLog(t, 400, 8<<10, 3)
	files, err := Files(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{RotatedPath(path, 3), RotatedPath(path, 2), RotatedPath(path, 1), path}
	if strings.Join(files, " ") != strings.Join(want, " ") {
		t.Fatalf("files %v, want %v", files, want)
	}
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Size() > 8<<10+1<<10 {
			t.Errorf("%s is %d bytes", f, fi.Size())
		}
	}
	rep, err := VerifyFile(path)
	if err != nil || !rep.OK {
		t.Fatalf("verify: %v %+v", err, rep.Broken)
	}
	if rep.RotatedAway == 0 || rep.FirstSeq != rep.RotatedAway+1 || rep.Dropped == nil || rep.Dropped.LastSeq != rep.RotatedAway ||
		rep.Dropped.Canary == 0 || rep.Dropped.Blocks != rep.Dropped.Canary || rep.Dropped.FirstSeq == 0 || len(rep.Files) != 4 || rep.Head == nil || rep.Head.Seq != rep.LastSeq {
		t.Errorf("report %+v, dropped %+v", rep, rep.Dropped)
	}
	// Every canary line of the deleted files is still counted, in the
	// newest rotation line: one in ten lines of 400 carried it.
	kept := 0
	var away int
	for _, f := range files {
		ReadLines(f, func(l []byte) error {
			var e Entry
			json.Unmarshal(l, &e)
			if e.Canary {
				kept++
			}
			if e.Rotation != nil {
				away = e.Rotation.CanaryRotatedAway
			}
			return nil
		})
	}
	if kept+away != 40 || away == 0 {
		t.Errorf("%d canary lines kept, %d counted as rotated away; 40 were written", kept, away)
	}
	h, _, _ := ReadHead(HeadPath(path))
	if h.Seq != rep.LastSeq || h.Hash != rep.LastHash {
		t.Errorf("head %+v, log ends at %d %s", h, rep.LastSeq, rep.LastHash)
	}
	// Streamed in order, the files verify too.
	var all bytes.Buffer
	for _, f := range files {
		data, _ := os.ReadFile(f)
		all.Write(data)
	}
	if rep, err := Verify(&all); err != nil || !rep.OK || rep.RotatedAway == 0 {
		t.Errorf("the files as one stream: %v %+v", err, rep)
	}
	// Reopened, the writer continues the chain across the files.
	w, err := OpenWriter(path, Rotate{MaxSize: 8 << 10, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		w.Write(Entry{Decision: Deny, Reason: strings.Repeat("r", 100)})
	}
	w.Close()
	if rep, err := VerifyFile(path); err != nil || !rep.OK || rep.LastSeq != w.seq || w.seq < 500 {
		t.Errorf("after reopening: %v %+v", err, rep)
	}
}

// TestRotateTamper: an edited line in an old file, a file deleted from
// the middle, and the oldest file deleted by hand (not by rotation) fail;
// a log that has rotated without deleting anything starts at seq 1.
func TestRotateTamper(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, path string)
		problem string
		file    int // RotatedPath's n of the broken file; 0 the log itself
	}{
		{"edited in an old file", func(t *testing.T, path string) {
			f := RotatedPath(path, 2)
			data, _ := os.ReadFile(f)
			lines := bytes.SplitAfter(data, []byte{'\n'})
			lines[3] = bytes.Replace(lines[3], []byte(`"status":200`), []byte(`"status":201`), 1)
			os.WriteFile(f, bytes.Join(lines, nil), 0o600)
		}, ProblemEdited, 2},
		{"a file deleted from the middle", func(t *testing.T, path string) {
			os.Remove(RotatedPath(path, 2))
		}, ProblemRemoved, 1},
		{"the oldest file deleted by hand", func(t *testing.T, path string) {
			os.Remove(RotatedPath(path, 3))
		}, ProblemTruncatedHead, 2},
		{"the newest rotated file deleted", func(t *testing.T, path string) {
			// With it goes the record of the last deletion: the start is
			// no longer accounted for, which is the first break.
			os.Remove(RotatedPath(path, 1))
		}, ProblemTruncatedHead, 3},
		{"the current file deleted", func(t *testing.T, path string) {
			os.Remove(path)
		}, ProblemTruncatedTail, 1},
		{"the current file cut short", func(t *testing.T, path string) {
			data, _ := os.ReadFile(path)
			lines := bytes.SplitAfter(data, []byte{'\n'})
			os.WriteFile(path, bytes.Join(lines[:len(lines)-3], nil), 0o600)
		}, ProblemTruncatedTail, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := rotatedLog(t, 400, 8<<10, 3)
			tt.tamper(t, path)
			rep, err := VerifyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			want := path
			if tt.file > 0 {
				want = RotatedPath(path, tt.file)
			}
			if rep.OK || rep.Broken.Problem != tt.problem || rep.Broken.File != want {
				t.Errorf("got %+v, want %s in %s", rep.Broken, tt.problem, filepath.Base(want))
			}
		})
	}
	t.Run("fewer files kept than before", func(t *testing.T) {
		path := rotatedLog(t, 400, 8<<10, 5)
		w, err := OpenWriter(path, Rotate{MaxSize: 8 << 10, MaxFiles: 2})
		if err != nil {
			t.Fatal(err)
		}
		for range 60 {
			w.Write(Entry{Decision: Allow, Host: "x.example", Reason: "route"})
		}
		w.Close()
		files, _ := Files(path)
		rep, err := VerifyFile(path)
		if err != nil || !rep.OK || len(files) != 3 || rep.Dropped == nil {
			t.Errorf("%v %+v: %v", err, rep, files)
		}
	})
	t.Run("rotated, nothing deleted", func(t *testing.T) {
		path := rotatedLog(t, 60, 8<<10, 5)
		rep, err := VerifyFile(path)
		if err != nil || !rep.OK || rep.RotatedAway != 0 || rep.FirstSeq != 0 || len(rep.Files) < 2 {
			t.Errorf("%v %+v", err, rep)
		}
	})
}

// TestRotateResumes: a writer stopped between moving the log aside and
// writing the next line (no current file) continues the chain.
func TestRotateResumes(t *testing.T) {
	path := rotatedLog(t, 50, 1<<20, 3)
	if err := os.Rename(path, RotatedPath(path, 1)); err != nil {
		t.Fatal(err)
	}
	w, err := OpenWriter(path, Rotate{MaxSize: 1 << 20, MaxFiles: 3})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(Entry{Decision: Allow})
	w.Close()
	if rep, err := VerifyFile(path); err != nil || !rep.OK || rep.LastSeq != 51 {
		t.Errorf("%v %+v", err, rep)
	}
}

// TestFollowRotation: Follow reads the rotated files first, then follows
// the log through rotations, more than one between two polls too: every
// seq once, in order.
func TestFollowRotation(t *testing.T) {
	path := rotatedLog(t, 100, 4<<10, 50)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan []byte, 1000)
	go follow(ctx, path, 20*time.Millisecond, func(l []byte) error {
		got <- bytes.Clone(l)
		return nil
	})
	w, err := OpenWriter(path, Rotate{MaxSize: 4 << 10, MaxFiles: 50})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	for i := range 300 {
		w.Write(Entry{Decision: Allow, Host: "x.example"})
		if i%100 == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	var lines [][]byte
	for len(lines) < int(w.seq) {
		select {
		case l := <-got:
			lines = append(lines, l)
		case <-time.After(2 * time.Second):
			t.Fatalf("%d lines followed of %d", len(lines), w.seq)
		}
	}
	seqs := seqsOf(t, lines)
	for i, s := range seqs {
		if s != uint64(i+1) {
			t.Fatalf("line %d has seq %d: %v", i, s, seqs)
		}
	}
	var e Entry
	json.Unmarshal(lines[len(lines)-1], &e)
	if w.seq != e.Seq {
		t.Errorf("followed up to seq %d of %d", e.Seq, w.seq)
	}
}

// TestFieldsCutEscaped: a field is cut by the bytes it takes in the line,
// escapes included: control bytes, DEL, C1 controls and invalid UTF-8
// take six each, and a line of them stays small.
func TestFieldsCutEscaped(t *testing.T) {
	for _, unit := range []string{"\x01", "\x7f", "\u0085", "\xff", `"`, "é", "A"} {
		var buf bytes.Buffer
		w := NewStreamWriter(&buf)
		long := strings.Repeat(unit, 30<<10)
		if err := w.Write(Entry{Method: long, Host: long, Path: long, Query: long, Reason: long, Decision: Deny}); err != nil {
			t.Fatal(err)
		}
		if buf.Len() > 5*MaxField+512 {
			t.Errorf("%q: a line of %d bytes", unit, buf.Len())
		}
		var e Entry
		if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(e.Path, " bytes]") || !strings.HasPrefix(e.Path, strings.Repeat(strings.ToValidUTF8(unit, "\ufffd"), 10)) {
			t.Errorf("%q: path %q", unit, e.Path[max(0, len(e.Path)-40):])
		}
	}
	if s := cut(strings.Repeat("\x01", 100), MaxField); s != strings.Repeat("\x01", 100) {
		t.Error("a short field was cut")
	}
}
