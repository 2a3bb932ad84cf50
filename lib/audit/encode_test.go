package audit

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// jsonLine is the line as encoding/json writes it, which appendEntry must
// match byte for byte (hashes chain the exact bytes, and lines written
// before and after the switch must look alike), but for DEL and the C1
// controls, which appendEntry escapes and encoding/json does not. Either
// way the line decodes to the same entry.
func jsonLine(t testing.TB, e *Entry) ([]byte, error) {
	t.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(e)
	return []byte(c1Escaper.Replace(buf.String())), err
}

var c1Escaper = func() *strings.Replacer {
	var oldnew []string
	for r := rune(0x7f); r <= 0x9f; r++ {
		oldnew = append(oldnew, string(r), fmt.Sprintf(`\u%04x`, r))
	}
	return strings.NewReplacer(oldnew...)
}()

// TestC1Escaped: no raw DEL or C1 control reaches a line, and the line
// still decodes to what was written.
func TestC1Escaped(t *testing.T) {
	path := "/\u009b2J\u009b31mALL-CLEAR\x7f\u0085"
	line, ok := appendEntry(nil, &Entry{Path: path, Query: "q=\u009b"})
	if !ok {
		t.Fatal("refused")
	}
	for _, r := range string(line) {
		if r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			t.Fatalf("raw %U in %q", r, line)
		}
	}
	var e Entry
	if err := json.Unmarshal(line, &e); err != nil || e.Path != path || e.Query != "q=\u009b" {
		t.Errorf("decodes to %q %q, %v", e.Path, e.Query, err)
	}
}

var encodeStrings = []string{
	"", "plain", `"quoted" \back\slash`, "<html> & 'x'", "ctl \x00\x01\x1f\x7f \b\f\n\r\t",
	"Ärger über 日本 🙂", "bad \xff\xfe utf8 \xe2\x82", "sep \u2028 \u2029 end", "\xed\xa0\x80 surrogate",
	"c1 \u0080\u009b\u009f nbsp \u00a0 del \x7f end", "\xc2 lone lead",
}

func TestAppendEntryMatchesJSON(t *testing.T) {
	when := time.Date(2026, 11, 26, 12, 0, 0, 123456789, time.UTC)
	var entries []Entry
	for _, s := range encodeStrings {
		entries = append(entries, Entry{Seq: 7, Time: when, Method: s, Host: s, Path: s, Query: s, Status: 403,
			Decision: Block, Reason: s, Route: s, Secret: s, Encoding: s, Canary: true,
			BytesUp: 1 << 40, BytesDown: -1, DurationMS: 1.5, Client: s, Prev: Genesis})
	}
	for _, d := range []float64{0, math.Copysign(0, -1), 1, 0.001, 123.456, 1e-6, 9.99e-7, 1e-7, 1e20, 1e21, 1.5e300, -2.5e-9, math.SmallestNonzeroFloat64, math.MaxFloat64} {
		entries = append(entries, Entry{Time: when, DurationMS: d})
	}
	for _, s := range encodeStrings {
		entries = append(entries, Entry{Time: when, Git: &Git{Repo: s, Service: s,
			Refs: []GitRef{{Ref: s, Old: s, New: s}, {Ref: "refs/heads/x"}}, RefCount: 70, Objects: 3, PackBytes: 1 << 33}})
	}
	entries = append(entries,
		Entry{Git: &Git{}}, // a git line with nothing but its repository and service
		Entry{Git: &Git{Repo: "a/b", Refs: []GitRef{}}}, // no refs: omitted, as encoding/json does
		Entry{}, // zero time, omitted fields
		Entry{Seq: math.MaxUint64, Time: time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), Status: -1},
		Entry{Time: when.In(time.FixedZone("x", -(23*3600 + 59*60)))},
	)
	for _, e := range entries {
		want, err := jsonLine(t, &e)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendEntry(nil, &e)
		if !ok || !bytes.Equal(got, want) {
			t.Errorf("appendEntry(%+v) =\n%s\nencoding/json:\n%s", e, got, want)
		}
	}
}

// What encoding/json refuses, appendEntry leaves to it, so the error is
// its own.
func TestAppendEntryRefuses(t *testing.T) {
	for _, e := range []Entry{
		{DurationMS: math.NaN()},
		{DurationMS: math.Inf(1)},
		{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)},
		{Time: time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC)},
	} {
		if _, err := jsonLine(t, &e); err == nil {
			t.Fatalf("encoding/json takes %+v", e)
		}
		if _, ok := appendEntry(nil, &e); ok {
			t.Errorf("appendEntry takes %+v", e)
		}
		if _, err := marshalLine(nil, &e); err == nil {
			t.Errorf("marshalLine takes %+v", e)
		}
	}
}

func FuzzAppendEntry(f *testing.F) {
	for _, s := range encodeStrings {
		f.Add(s, s, 1.25, int64(5))
	}
	f.Fuzz(func(t *testing.T, s1, s2 string, d float64, n int64) {
		e := Entry{Seq: uint64(n), Time: time.Unix(0, n).UTC(), Method: s1, Host: s2, Path: s1 + s2, Query: s2,
			Status: int(n), Decision: s2, Reason: s2 + s1, Route: s1, Secret: s2, Encoding: s1,
			Canary: n%2 == 0, BytesUp: n, BytesDown: -n, DurationMS: d, Client: s2, Prev: s1}
		want, err := jsonLine(t, &e)
		got, ok := appendEntry(nil, &e)
		if (err == nil) != ok {
			t.Fatalf("encoding/json error %v, appendEntry ok %v", err, ok)
		}
		if ok && !bytes.Equal(got, want) {
			t.Fatalf("appendEntry:\n%q\nencoding/json:\n%q", got, want)
		}
	})
}

func BenchmarkWrite(b *testing.B) {
	w := NewStreamWriter(discard{})
	e := Entry{Time: time.Now(), Method: "GET", Host: "api.example.com", Path: "/v1/repos/x/y",
		Status: 200, Decision: Allow, Reason: "allowed by route api.example.com", Route: "api.example.com",
		BytesDown: 1234, DurationMS: 0.731, Client: "172.17.0.2:51234"}
	b.ReportAllocs()
	for b.Loop() {
		if err := w.Write(e); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
