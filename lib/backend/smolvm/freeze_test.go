package smolvm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/freeze"
)

// script is a Runner that records command lines and answers them from a
// table: the first entry whose key starts the line wins.
type script struct {
	calls   []string
	answers []answer
	// create makes the file a command would write (pack's --output).
	create func(args []string)
}

type answer struct {
	prefix string
	out    string
	err    error
}

func (s *script) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	s.calls = append(s.calls, line)
	for _, a := range s.answers {
		if strings.HasPrefix(line, a.prefix) {
			if a.err == nil && s.create != nil {
				s.create(args)
			}
			return []byte(a.out), a.err
		}
	}
	if s.create != nil {
		s.create(args)
	}
	return nil, nil
}

// The smolvm command lines, checked against smolvm v1.22.2's CLI
// (src/cli/machine.rs, src/cli/pack.rs) and docs/pack/SKILL.md:
// smolvm machine stop --name NAME, smolvm pack create --from-vm NAME
// --output PATH --single-file, smolvm machine start --name NAME,
// smolvm machine ls --json.
func TestSmolVMCommitCommandLines(t *testing.T) {
	dir := t.TempDir()
	run := &script{}
	run.create = func(args []string) {
		if len(args) > 1 && args[0] == "pack" {
			os.WriteFile(args[5], []byte("packed"), 0o700)
		}
	}
	s := &Freezer{Run: run, Dir: dir}
	ctx := t.Context()
	id, err := s.Commit(ctx, freeze.Target{Slug: "demo-1a2b", Container: "bot-bottle-demo-1a2b", Ref: "bb/demo-1a2b:20261126T120000Z"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "demo-1a2b", "images", "20261126T120000Z")
	want := []string{
		"smolvm machine stop --name bot-bottle-demo-1a2b",
		"smolvm pack create --from-vm bot-bottle-demo-1a2b --output " + path + " --single-file",
		"smolvm machine start --name bot-bottle-demo-1a2b",
	}
	if diff := cmp.Diff(want, run.calls); diff != "" {
		t.Errorf("command lines (-want +got):\n%s", diff)
	}
	if sum := sha256.Sum256([]byte("packed")); id != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("id = %q, want the SHA-256 of the packed file", id)
	}
	if err := s.Tag(ctx, "bb/demo-1a2b:20261126T120000Z", "bb/demo-1a2b:latest"); err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(filepath.Join(dir, "demo-1a2b", "images", "latest")); err != nil || target != "20261126T120000Z" {
		t.Errorf("latest -> %q, %v; want the snapshot's file", target, err)
	}
	if ok, err := s.Exists(ctx, "bb/demo-1a2b:latest"); !ok || err != nil {
		t.Errorf("Exists(latest) = %v, %v", ok, err)
	}
	for _, ref := range []string{"bb/demo-1a2b:latest", "bb/demo-1a2b:20261126T120000Z", "bb/demo-1a2b:20261126T120000Z"} {
		if err := s.Remove(ctx, ref); err != nil {
			t.Errorf("Remove(%s): %v", ref, err)
		}
	}
	if ok, _ := s.Exists(ctx, "bb/demo-1a2b:20261126T120000Z"); ok {
		t.Error("the snapshot's file is still there")
	}
	if _, err := s.Path("bb/demo-1a2b:../../etc"); err == nil {
		t.Error("Path accepted a tag that climbs out of the folder")
	}
}

func TestSmolVMPackFailsRestarts(t *testing.T) {
	run := &script{answers: []answer{{prefix: "smolvm pack", err: errors.New("refuses a running machine")}}}
	s := &Freezer{Run: run, Dir: t.TempDir()}
	_, err := s.Commit(t.Context(), freeze.Target{Slug: "d-1", Container: "bot-bottle-d-1", Ref: "bb/d-1:20261126T120000Z"})
	if err == nil || !strings.Contains(err.Error(), "packing bottle d-1: refuses a running machine") {
		t.Errorf("error = %v", err)
	}
	if last := run.calls[len(run.calls)-1]; last != "smolvm machine start --name bot-bottle-d-1" {
		t.Errorf("last command %q, want the machine started again", last)
	}
}

func TestSmolVMRunning(t *testing.T) {
	run := &script{answers: []answer{{prefix: "smolvm machine ls --json", out: `[
		{"name":"bot-bottle-a-1","state":"running"},
		{"name":"bot-bottle-b-2","state":"stopped"},
		{"name":"default","state":"running"}]`}}}
	s := &Freezer{Run: run, Dir: t.TempDir()}
	slugs, err := s.Running(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a-1"}, slugs); diff != "" {
		t.Errorf("Running (-want +got):\n%s", diff)
	}
}
