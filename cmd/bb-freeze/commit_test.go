package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/backend/docker"
	"github.com/bb-bottles/bb/lib/backend/docker/freezetest"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/freeze"
	"github.com/bb-bottles/bb/lib/state"
	"github.com/bb-bottles/bb/lib/terminal"
)

// testDeps are deps on st with no terminal, test labels and a clock a
// second apart per call; out and errOut collect the streams.
func testDeps(st *state.Store, freezer func(context.Context, string) (freeze.Freezer, error)) (*deps, *bytes.Buffer, *bytes.Buffer) {
	var out, errOut bytes.Buffer
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	return &deps{
		s:        cli.Streams{In: strings.NewReader(""), Out: &out, Err: &errOut},
		st:       st,
		freezer:  freezer,
		terminal: func() (io.ReadCloser, error) { return nil, terminal.ErrNoTerminal },
		labels:   freezetest.Labels,
		now:      func() time.Time { t0 = t0.Add(time.Second); return t0 },
	}, &out, &errOut
}

// answering is a terminal that answers s.
func answering(s string) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(s)), nil }
}

func slugFor(name string) string {
	return name + "-" + time.Now().Format("150405.000000")[7:]
}

// failing is a Freezer whose Commit fails for one slug.
type failing struct {
	freeze.Freezer
	slug string
}

func (f failing) Commit(ctx context.Context, t freeze.Target) (string, error) {
	if t.Slug == f.slug {
		return "", cli.Backend(errors.New("engine says no"))
	}
	return f.Freezer.Commit(ctx, t)
}

func TestCommitAll(t *testing.T) {
	c := freezetest.Engine(t)
	st := freezetest.Store(t)
	a, b, bad := slugFor("fza"), slugFor("fzb"), slugFor("fzc")
	for _, s := range []string{a, b, bad} {
		freezetest.Bottle(t, c, st, s)
	}
	d, out, errOut := testDeps(st, func(context.Context, string) (freeze.Freezer, error) {
		return failing{&docker.Freezer{API: c}, bad}, nil
	})
	err := runCommit(t.Context(), d, commitOptions{all: true})
	if code := cli.Report(errOut, "bb-freeze", err); code != cli.ExitBackend {
		t.Errorf("exit %d, want 3 when one bottle failed\n%s", code, errOut)
	}
	committed := map[string]bool{}
	dec := json.NewDecoder(out)
	for dec.More() {
		var rec struct {
			freeze.Record
			Error string `json:"error"`
		}
		if err := dec.Decode(&rec); err != nil {
			t.Fatalf("stdout is not JSON lines: %v\n%s", err, out)
		}
		switch {
		case rec.Slug == bad:
			if !strings.Contains(rec.Error, "engine says no") || rec.Backend != "docker" {
				t.Errorf("the failed bottle's line: %+v", rec)
			}
		case rec.Error == "" && rec.Image != "":
			committed[rec.Slug] = true
		default:
			t.Errorf("unexpected line %+v", rec)
		}
	}
	if diff := cmp.Diff(map[string]bool{a: true, b: true}, committed); diff != "" {
		t.Errorf("committed (-want +got):\n%s", diff)
	}
	if !strings.Contains(errOut.String(), "bottle "+bad+": engine says no") ||
		!strings.Contains(errOut.String(), "bb resume "+a) {
		t.Errorf("stderr does not report the failure and the resume commands:\n%s", errOut)
	}
	for s, want := range map[string]int{a: 1, b: 1, bad: 0} {
		md, _ := st.ReadMetadata(s)
		if len(md.Images) != want || md.Preserved != (want == 1) {
			t.Errorf("bottle %s: %d images, preserved %v; want %d", s, len(md.Images), md.Preserved, want)
		}
	}

	t.Run("no slug, no terminal lists the running bottles", func(t *testing.T) {
		d, out, errOut := testDeps(st, dockerFreezer(c))
		err := runCommit(t.Context(), d, commitOptions{})
		if code := cli.Report(errOut, "bb-freeze", err); code != cli.ExitUsage {
			t.Errorf("exit %d, want 2", code)
		}
		for _, s := range []string{a, b, bad} {
			if !strings.Contains(errOut.String(), s) {
				t.Errorf("the error does not list %s:\n%s", s, errOut)
			}
		}
		if out.Len() != 0 {
			t.Errorf("stdout: %s", out)
		}
	})

	t.Run("the picker", func(t *testing.T) {
		d, out, errOut := testDeps(st, dockerFreezer(c))
		d.terminal = answering("2\n")
		mds, err := running(t.Context(), d)
		if err != nil || len(mds) != 3 {
			t.Fatalf("running = %v, %v", mds, err)
		}
		if err := runCommit(t.Context(), d, commitOptions{keep: 1}); err != nil {
			t.Fatalf("%v\n%s", err, errOut)
		}
		var rec freeze.Record
		if err := json.Unmarshal(out.Bytes(), &rec); err != nil || rec.Slug != mds[1].Slug {
			t.Errorf("committed %+v (%v), want the second of the list, %s", rec, err, mds[1].Slug)
		}
		if !strings.Contains(errOut.String(), "  2) "+mds[1].Slug+"  demo "+mds[1].Slug) {
			t.Errorf("the list does not number the bottles:\n%s", errOut)
		}
	})

	t.Run("ls and rm", func(t *testing.T) {
		d, out, errOut := testDeps(st, dockerFreezer(c))
		if err := runLs(t.Context(), d, lsOptions{slug: a}); err != nil {
			t.Fatal(err)
		}
		var listed []freeze.Listed
		if err := json.Unmarshal(out.Bytes(), &listed); err != nil || len(listed) != 1 || !listed[0].Present || !listed[0].Latest {
			t.Fatalf("ls %s = %s (%v), want its one snapshot, present", a, out, err)
		}
		out.Reset()
		err := runRm(t.Context(), d, rmOptions{slug: a, image: "nope"})
		if code := cli.Report(errOut, "bb-freeze", err); code != cli.ExitUsage {
			t.Errorf("rm of an unknown image: exit %d, want 2", code)
		}
		if err := runRm(t.Context(), d, rmOptions{slug: a, image: listed[0].Image}); err != nil {
			t.Fatal(err)
		}
		out.Reset()
		if err := runLs(t.Context(), d, lsOptions{slug: a}); err != nil || strings.TrimSpace(out.String()) != "[]" {
			t.Errorf("ls after rm = %s, %v; want []", out, err)
		}
	})
}

func dockerFreezer(c docker.FreezerAPI) func(context.Context, string) (freeze.Freezer, error) {
	return func(context.Context, string) (freeze.Freezer, error) { return &docker.Freezer{API: c}, nil }
}

// stopper is a Freezer that must stop bottles, in memory.
type stopper struct{ commits int }

func (s *stopper) Backend() string                           { return "macos-container" }
func (s *stopper) NeedsStop() bool                           { return true }
func (s *stopper) Running(context.Context) ([]string, error) { return []string{"apple-1"}, nil }
func (s *stopper) Commit(context.Context, freeze.Target) (string, error) {
	s.commits++
	return "sha256:1", nil
}
func (s *stopper) Tag(context.Context, string, string) error    { return nil }
func (s *stopper) Remove(context.Context, string) error         { return nil }
func (s *stopper) Exists(context.Context, string) (bool, error) { return true, nil }

func TestCommitAsksBeforeStopping(t *testing.T) {
	tests := []struct {
		name     string
		terminal func() (io.ReadCloser, error)
		stop     bool
		code     int
		commits  int
		stderr   string
	}{
		{"no terminal", nil, false, cli.ExitUsage, 0, "hint: pass --stop to agree to stopping (and restarting) it"},
		{"refused", answering("n\n"), false, cli.ExitOK, 0, "cancelled: n"},
		{"no answer", answering(""), false, cli.ExitOK, 0, "cancelled: n"},
		{"agreed", answering("y\n"), false, cli.ExitOK, 1, "bb resume apple-1"},
		{"--stop", nil, true, cli.ExitOK, 1, "bb resume apple-1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := freezetest.Store(t)
			if err := st.WriteMetadata("apple-1", state.Metadata{Backend: "container", Label: "apple"}); err != nil {
				t.Fatal(err)
			}
			f := &stopper{}
			d, out, errOut := testDeps(st, func(context.Context, string) (freeze.Freezer, error) { return f, nil })
			if tt.terminal != nil {
				d.terminal = tt.terminal
			}
			for _, opts := range []commitOptions{{slug: "apple-1", stop: tt.stop}, {all: true, stop: tt.stop}} {
				out.Reset()
				errOut.Reset()
				f.commits = 0
				err := runCommit(t.Context(), d, opts)
				code := cli.Report(errOut, "bb-freeze", err)
				if opts.all && tt.code == cli.ExitUsage {
					tt.code = cli.ExitBackend // --all reports each failure and exits 3
				}
				if code != tt.code || f.commits != tt.commits || !strings.Contains(errOut.String(), tt.stderr) {
					t.Errorf("%+v: exit %d after %d commits, want %d after %d; stderr:\n%s", opts, code, f.commits, tt.code, tt.commits, errOut)
				}
				if tt.commits == 0 && opts.slug != "" && out.Len() != 0 {
					t.Errorf("stdout: %s", out)
				}
			}
		})
	}
}
