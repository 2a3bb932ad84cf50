package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// chain returns a valid log of n lines, split into lines with their
// newlines.
func chain(t *testing.T, n int) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	for i := 0; i < n; i++ {
		e := Entry{Method: "GET", Host: fmt.Sprintf("h%d.example.com", i), Path: "/", Status: 200, Decision: Allow, Reason: "route"}
		if err := w.Write(e); err != nil {
			t.Fatal(err)
		}
	}
	return bytes.SplitAfter(buf.Bytes(), []byte{'\n'})[:n]
}

func join(lines [][]byte) []byte { return bytes.Join(lines, nil) }

func TestVerify(t *testing.T) {
	tests := []struct {
		name   string
		tamper func([][]byte) [][]byte
		lines  int
		want   *Break // nil: intact
		torn   []int
	}{
		{"intact", func(l [][]byte) [][]byte { return l }, 5, nil, nil},
		{"empty", func([][]byte) [][]byte { return nil }, 0, nil, nil},
		{"edited middle line", func(l [][]byte) [][]byte {
			l[2] = bytes.Replace(l[2], []byte("h2.example.com"), []byte("h9.example.com"), 1)
			return l
		}, 5, &Break{Line: 3, Problem: ProblemEdited}, nil},
		{"edited first line", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(`"status":200`), []byte(`"status":201`), 1)
			return l
		}, 5, &Break{Line: 1, Problem: ProblemEdited}, nil},
		{"first prev not genesis", func(l [][]byte) [][]byte {
			l[0] = bytes.Replace(l[0], []byte(Genesis), []byte("1"+Genesis[1:]), 1)
			return l
		}, 5, &Break{Line: 1, Problem: ProblemEdited}, nil},
		{"removed line", func(l [][]byte) [][]byte { return append(l[:2:2], l[3:]...) }, 4, &Break{Line: 3, Problem: ProblemRemoved}, nil},
		{"swapped lines", func(l [][]byte) [][]byte { l[1], l[2] = l[2], l[1]; return l }, 5, &Break{Line: 2, Problem: ProblemReordered}, nil},
		{"moved line far", func(l [][]byte) [][]byte { return [][]byte{l[0], l[2], l[3], l[4], l[1]} }, 5, &Break{Line: 2, Problem: ProblemReordered}, nil},
		{"repeated line", func(l [][]byte) [][]byte { return [][]byte{l[0], l[1], l[1], l[2], l[3], l[4]} }, 6, &Break{Line: 3, Problem: ProblemReordered}, nil},
		{"truncated head", func(l [][]byte) [][]byte { return l[2:] }, 3, &Break{Line: 1, Problem: ProblemTruncatedHead}, nil},
		{"torn tail", func(l [][]byte) [][]byte { l[4] = l[4][:20]; return l }, 5, &Break{Line: 5, Problem: ProblemTornTail}, nil},
		{"newline missing at end", func(l [][]byte) [][]byte { l[4] = l[4][:len(l[4])-1]; return l }, 5, &Break{Line: 5, Problem: ProblemTornTail}, nil},
		{"garbage line inserted", func(l [][]byte) [][]byte {
			return [][]byte{l[0], l[1], []byte("hello\n"), l[2], l[3], l[4]}
		}, 6, &Break{Line: 3, Problem: ProblemNotEntry}, nil},
		{"blank line", func(l [][]byte) [][]byte { return [][]byte{l[0], []byte("\n"), l[1], l[2], l[3], l[4]} }, 6, &Break{Line: 2, Problem: ProblemNotEntry}, nil},
		{"garbage last line", func(l [][]byte) [][]byte { return append(l, []byte("{}\n")) }, 6, &Break{Line: 6, Problem: ProblemNotEntry}, nil},
		// Whole lines cut from the end leave a valid chain: only the head
		// file can tell (TestVerifyFileHead).
		{"cut last line", func(l [][]byte) [][]byte { return l[:4] }, 4, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			log := join(tt.tamper(chain(t, 5)))
			rep, err := Verify(bytes.NewReader(log))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Lines != tt.lines {
				t.Errorf("lines = %d, want %d", rep.Lines, tt.lines)
			}
			if rep.OK != (tt.want == nil) {
				t.Errorf("ok = %v, want %v (broken: %+v)", rep.OK, tt.want == nil, rep.Broken)
			}
			if diff := cmp.Diff(tt.want, rep.Broken, cmpopts.IgnoreFields(Break{}, "Reason")); diff != "" {
				t.Errorf("broken (-want +got):\n%s", diff)
			}
			if rep.Broken != nil && rep.Broken.Reason == "" {
				t.Error("a break without a reason")
			}
			if diff := cmp.Diff(tt.torn, rep.Torn); diff != "" {
				t.Errorf("torn (-want +got):\n%s", diff)
			}
		})
	}
}

func writeN(t *testing.T, w *Writer, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		if err := w.Write(Entry{Method: "GET", Host: "example.com", Decision: Deny}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestVerifyFileHead(t *testing.T) {
	tests := []struct {
		name   string
		tamper func(log [][]byte) [][]byte
		want   *Break
	}{
		{"intact", func(l [][]byte) [][]byte { return l }, nil},
		{"cut last lines", func(l [][]byte) [][]byte { return l[:3] }, &Break{Line: 4, Problem: ProblemTruncatedTail}},
		{"edited last line", func(l [][]byte) [][]byte {
			l[4] = bytes.Replace(l[4], []byte(`"deny"`), []byte(`"allow"`), 1)
			return l
		}, &Break{Line: 5, Problem: ProblemEdited}},
		// The head lags the log: lines after it are not a break.
		{"log ahead of head", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			w, err := NewWriter(path)
			if err != nil {
				t.Fatal(err)
			}
			writeN(t, w, 5)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if tt.tamper == nil {
				// Append after the head was written, as a live log is.
				f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND, 0)
				if err != nil {
					t.Fatal(err)
				}
				seq, prev, _, err := tail(f)
				if err != nil {
					t.Fatal(err)
				}
				sw := &Writer{w: f, seq: seq, prev: prev}
				writeN(t, sw, 2)
				f.Close()
			} else {
				data, _ := os.ReadFile(path)
				lines := bytes.SplitAfter(data, []byte{'\n'})
				lines = lines[:len(lines)-1]
				if err := os.WriteFile(path, join(tt.tamper(lines)), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := VerifyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Head == nil || rep.Head.Seq != 5 {
				t.Errorf("head = %+v, want seq 5", rep.Head)
			}
			if diff := cmp.Diff(tt.want, rep.Broken, cmpopts.IgnoreFields(Break{}, "Reason")); diff != "" {
				t.Errorf("broken (-want +got):\n%s", diff)
			}
		})
	}
}

func TestWriterFills(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	at := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600))
	if err := w.Write(Entry{Seq: 99, Prev: "forged", Time: at, Host: "a.example.com", Decision: Allow}); err != nil {
		t.Fatal(err)
	}
	if err := w.Write(Entry{Host: "b.example.com", Decision: Deny}); err != nil {
		t.Fatal(err)
	}
	lines := bytes.SplitAfter(buf.Bytes(), []byte{'\n'})
	if len(lines) != 3 || len(lines[2]) != 0 {
		t.Fatalf("want 2 lines, got %q", buf.String())
	}
	var got []Entry
	for _, l := range lines[:2] {
		var e Entry
		if err := jsonUnmarshal(l, &e); err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
	}
	if got[0].Seq != 1 || got[1].Seq != 2 {
		t.Errorf("seqs = %d, %d; want 1, 2", got[0].Seq, got[1].Seq)
	}
	if got[0].Prev != Genesis || got[1].Prev != hashLine(bytes.TrimSuffix(lines[0], []byte{'\n'})) {
		t.Errorf("prevs = %s, %s", got[0].Prev, got[1].Prev)
	}
	if !got[0].Time.Equal(at) || got[0].Time.Location() != time.UTC {
		t.Errorf("time = %v, want %v in UTC", got[0].Time, at)
	}
	if got[1].Time.IsZero() || time.Since(got[1].Time) > time.Minute {
		t.Errorf("zero time not filled: %v", got[1].Time)
	}
}

func TestWriterConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	w, err := NewWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 100
	var wg sync.WaitGroup
	for g := 0; g < writers; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				if err := w.Write(Entry{Method: "POST", Host: fmt.Sprintf("w%d.example.com", g), Path: fmt.Sprintf("/%d", i), Decision: Allow}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err := VerifyFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || rep.Lines != writers*each || rep.LastSeq != writers*each {
		t.Errorf("report = %+v, want ok with %d lines", rep, writers*each)
	}
}

func TestNewWriterContinues(t *testing.T) {
	tests := []struct {
		name     string
		before   int    // lines written by a first writer
		appended string // bytes appended after it, as a crash would leave
		want     Report
	}{
		{"new file", 0, "", Report{Lines: 2, OK: true, LastSeq: 2}},
		{"existing log", 3, "", Report{Lines: 5, OK: true, LastSeq: 5}},
		{"torn last line is sealed", 3, `{"seq":4,"time":"2030-`, Report{Lines: 6, OK: true, LastSeq: 5, Torn: []int{4}}},
		{"whole line without newline", 3, "", Report{Lines: 5, OK: true, LastSeq: 5}},
		// Lines cut from the end before a restart stay visible as a gap.
		{"cut while stopped", 4, "", Report{Lines: 4, LastSeq: 2,
			Broken: &Break{Line: 3, Problem: ProblemRemoved, Reason: "line 3 has seq 5 after seq 2: 2 line(s) were removed"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			if tt.before > 0 {
				w, err := NewWriter(path)
				if err != nil {
					t.Fatal(err)
				}
				writeN(t, w, tt.before)
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.appended != "" {
				f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				f.WriteString(tt.appended)
				f.Close()
			}
			data, _ := os.ReadFile(path)
			switch tt.name {
			case "whole line without newline":
				os.WriteFile(path, bytes.TrimSuffix(data, []byte{'\n'}), 0o600)
			case "cut while stopped":
				lines := bytes.SplitAfter(data, []byte{'\n'})
				os.WriteFile(path, join(lines[:2]), 0o600)
			}
			w, err := NewWriter(path)
			if err != nil {
				t.Fatal(err)
			}
			writeN(t, w, 2)
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			rep, err := VerifyFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, rep, cmpopts.IgnoreFields(Report{}, "File", "LastHash", "Head")); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			fi, _ := os.Stat(path)
			if fi.Mode().Perm() != 0o600 {
				t.Errorf("mode = %v, want 0600", fi.Mode().Perm())
			}
		})
	}
}

func TestNewWriterLongLines(t *testing.T) {
	// Longer lines than tail's first chunk, as a writer before MaxField
	// wrote them.
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	long := "/" + string(bytes.Repeat([]byte("a"), 100<<10))
	var data []byte
	prev := Genesis
	for i := 0; i < 3; i++ {
		e := Entry{Seq: uint64(i + 1), Time: time.Now().UTC(), Host: "example.com", Path: long, Decision: Allow, Prev: prev}
		line, err := marshalLine(nil, &e)
		if err != nil {
			t.Fatal(err)
		}
		prev = hashLine(line[:len(line)-1])
		data = append(data, line...)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(path)
	if err != nil {
		t.Fatal(err)
	}
	writeN(t, w, 1)
	w.Close()
	rep, err := VerifyFile(path)
	if err != nil || !rep.OK || rep.LastSeq != 4 {
		t.Errorf("report = %+v, %v; want ok at seq 4", rep, err)
	}
}

func TestFollow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan string, 10)
	done := make(chan error, 1)
	go func() {
		done <- follow(ctx, path, 5*time.Millisecond, func(l []byte) error {
			got <- string(l)
			return nil
		})
	}()
	time.Sleep(20 * time.Millisecond) // the log does not exist yet
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("one\ntw")
	want := []string{"one", "two", "three"}
	var lines []string
	lines = append(lines, <-got)
	time.Sleep(20 * time.Millisecond) // a half line is held back
	f.WriteString("o\nthree\n")
	f.Close()
	lines = append(lines, <-got, <-got)
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("follow = %v, want context.Canceled", err)
	}
}

func TestFilter(t *testing.T) {
	tests := []struct {
		f    Filter
		line string
		want bool
		err  bool
	}{
		{Filter{}, `{"decision":"allow"}`, true, false},
		{Filter{Decision: Deny}, `{"decision":"allow"}`, false, false},
		{Filter{Decision: Block}, `{"decision":"block"}`, true, false},
		{Filter{Canary: true}, `{"decision":"block","canary":false}`, false, false},
		{Filter{Canary: true}, `{"decision":"block","canary":true}`, true, false},
		{Filter{}, `nope`, false, true},
	}
	for _, tt := range tests {
		got, err := tt.f.Match([]byte(tt.line))
		if got != tt.want || (err != nil) != tt.err {
			t.Errorf("%+v.Match(%s) = %v, %v; want %v, error %v", tt.f, tt.line, got, err, tt.want, tt.err)
		}
	}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

// TestFieldsTruncated: whatever the agent puts in a path, a query or a
// host, a line stays near the size of its fields' cap.
func TestFieldsTruncated(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	long := strings.Repeat("A", 30<<10)
	utf := strings.Repeat("é", 20<<10)
	if err := w.Write(Entry{Method: long, Host: long, Path: "/" + long, Query: utf, Decision: Deny, Reason: "path /" + long}); err != nil {
		t.Fatal(err)
	}
	if buf.Len() > 7*MaxField {
		t.Errorf("a line of %d bytes", buf.Len())
	}
	var e Entry
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	for name, f := range map[string]string{"method": e.Method, "host": e.Host, "path": e.Path, "query": e.Query, "reason": e.Reason} {
		if len(f) > MaxField || !strings.Contains(f, " bytes]") || !utf8.ValidString(f) {
			t.Errorf("%s: %d bytes, %q", name, len(f), f[max(0, len(f)-40):])
		}
	}
	if kept := strings.Index(e.Path, "…"); e.Path[kept:] != fmt.Sprintf("…[cut %d bytes]", len(long)+1-kept) {
		t.Errorf("path ends %q", e.Path[len(e.Path)-40:])
	}
	if s := Truncate("short", MaxField); s != "short" {
		t.Errorf("Truncate(short) = %q", s)
	}
}

type failingWriter struct{ fail atomic.Bool }

func (f *failingWriter) Write(p []byte) (int, error) {
	if f.fail.Load() {
		return 0, errors.New("no space left on device")
	}
	return len(p), nil
}

// TestFailing: a failed write sets Failing until a write succeeds; a
// closed writer is failing for good.
func TestFailing(t *testing.T) {
	fw := &failingWriter{}
	w := NewStreamWriter(fw)
	if w.Failing() {
		t.Fatal("failing before any write")
	}
	fw.fail.Store(true)
	if err := w.Write(Entry{Decision: Allow}); err == nil || !w.Failing() {
		t.Fatalf("write to a full disk: %v, failing %v", err, w.Failing())
	}
	fw.fail.Store(false)
	if err := w.Write(Entry{Decision: Allow}); err != nil || w.Failing() {
		t.Fatalf("write after space came back: %v, failing %v", err, w.Failing())
	}
	w.Close()
	if !w.Failing() || w.Write(Entry{}) == nil {
		t.Error("a closed writer is not failing")
	}
}

// A push's refs are the agent's to choose, as many and as long as it
// likes: a line lists MaxGitRefs of them, each cut to MaxField, and says
// how many there were.
func TestWriteCutsGitRefs(t *testing.T) {
	var buf bytes.Buffer
	w := NewStreamWriter(&buf)
	refs := make([]GitRef, 500)
	for i := range refs {
		refs[i] = GitRef{Ref: "refs/heads/" + strings.Repeat("x", 5000), Old: strings.Repeat("0", 500), New: "1"}
	}
	g := &Git{Repo: "a/b", Service: "receive-pack", Refs: refs, RefCount: 500}
	if err := w.Write(Entry{Git: g}); err != nil {
		t.Fatal(err)
	}
	if len(g.Refs) != 500 || len(g.Refs[0].Ref) != 5011 {
		t.Error("Write changed the caller's entry")
	}
	var e Entry
	if err := json.Unmarshal(buf.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if len(e.Git.Refs) != MaxGitRefs || e.Git.RefCount != 500 {
		t.Errorf("logged %d refs of %d", len(e.Git.Refs), e.Git.RefCount)
	}
	for _, r := range e.Git.Refs {
		if len(r.Ref) > MaxField || len(r.Old) > 80 {
			t.Fatalf("a ref of %d bytes (old %d) was logged", len(r.Ref), len(r.Old))
		}
	}
	if buf.Len() > 100<<10 {
		t.Errorf("the line is %d bytes", buf.Len())
	}
}
