package freeze

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

// The Apple container command lines, checked against apple/container's
// docs/command-reference.md: container stop <ids>, container export -o
// <output> <id> (stopped containers only), container build -f <path> -t
// <name> --label <key=val> --progress plain <context-dir>, container image
// list --format json, container start <id>.
func TestAppleCommitCommandLines(t *testing.T) {
	tmp := t.TempDir()
	imageList := `[{"reference":"docker.io/bb/demo-1a2b:20261126T120000Z","descriptor":{"digest":"sha256:abc","size":1,"mediaType":"application/vnd.oci.image.index.v1+json"}}]`
	tests := []struct {
		name    string
		answers []answer
		wantErr string
		want    []string
	}{
		{
			name:    "ok",
			answers: []answer{{prefix: "container image list", out: imageList}},
			want: []string{
				"container stop bot-bottle-demo-1a2b",
				"container export -o DIR/rootfs.tar bot-bottle-demo-1a2b",
				"container build -f DIR/Dockerfile -t bb/demo-1a2b:20261126T120000Z --label bb.role=snapshot --label bb.slug=demo-1a2b --label bb.test=1 --progress plain DIR",
				"container image list --format json",
				"container start bot-bottle-demo-1a2b",
			},
		},
		{
			name:    "export fails, the bottle is started again",
			answers: []answer{{prefix: "container export", err: errors.New("invalidState: container is not stopped")}},
			wantErr: "exporting bottle demo-1a2b: invalidState: container is not stopped",
			want: []string{
				"container stop bot-bottle-demo-1a2b",
				"container export -o DIR/rootfs.tar bot-bottle-demo-1a2b",
				"container start bot-bottle-demo-1a2b",
			},
		},
		{
			name:    "stop fails, nothing else runs",
			answers: []answer{{prefix: "container stop", err: errors.New("not found")}},
			wantErr: "stopping bottle demo-1a2b: not found",
			want:    []string{"container stop bot-bottle-demo-1a2b"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run := &script{answers: tt.answers}
			var dockerfile string
			run.create = func(args []string) {
				if args[0] == "build" {
					b, _ := os.ReadFile(args[2])
					dockerfile = string(b)
				}
			}
			a := &Apple{Run: run, TempDir: tmp}
			id, err := a.Commit(t.Context(), Target{Slug: "demo-1a2b", Container: "bot-bottle-demo-1a2b",
				Ref: "bb/demo-1a2b:20261126T120000Z", Labels: map[string]string{"bb.test": "1"}})
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Errorf("error = %v, want %q", err, tt.wantErr)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if id != "sha256:abc" {
					t.Errorf("id = %q, want the listed digest", id)
				}
				if want := "FROM scratch\nADD rootfs.tar /\n"; dockerfile != want {
					t.Errorf("Dockerfile = %q, want %q", dockerfile, want)
				}
			}
			if diff := cmp.Diff(tt.want, redactDirs(run.calls, tmp)); diff != "" {
				t.Errorf("command lines (-want +got):\n%s", diff)
			}
			if entries, _ := os.ReadDir(tmp); len(entries) != 0 {
				t.Errorf("left in the temporary folder: %v", entries)
			}
		})
	}
}

// redactDirs replaces the commit's temporary folder (tmp/bb-freeze-*) by DIR.
func redactDirs(calls []string, tmp string) []string {
	out := make([]string, len(calls))
	for i, c := range calls {
		fields := strings.Fields(c)
		for j, f := range fields {
			if strings.HasPrefix(f, tmp+string(filepath.Separator)) {
				rest := strings.TrimPrefix(f, tmp+string(filepath.Separator))
				_, after, _ := strings.Cut(rest, string(filepath.Separator))
				fields[j] = strings.TrimSuffix("DIR/"+after, "/")
			}
		}
		out[i] = strings.Join(fields, " ")
	}
	return out
}

func TestAppleTagRemoveExistsRunning(t *testing.T) {
	run := &script{answers: []answer{
		{prefix: "container image list", out: `[{"reference":"bb/x-1:latest","descriptor":{"digest":"sha256:1"}}]`},
		{prefix: "container list", out: `[
			{"status":"running","configuration":{"id":"bot-bottle-b-2","labels":{"bb.slug":"b-2","bb.role":"agent"}}},
			{"status":"running","configuration":{"id":"bot-bottle-b-2-egress","labels":{"bb.slug":"b-2","bb.role":"egress"}}},
			{"status":"stopped","configuration":{"id":"bot-bottle-a-1","labels":{"bb.slug":"a-1","bb.role":"agent"}}},
			{"status":"running","configuration":{"id":"other","labels":{}}}]`},
	}}
	a := &Apple{Run: run}
	ctx := t.Context()
	if err := a.Tag(ctx, "bb/x-1:20261126T120000Z", "bb/x-1:latest"); err != nil {
		t.Fatal(err)
	}
	if ok, err := a.Exists(ctx, "bb/x-1:latest"); !ok || err != nil {
		t.Errorf("Exists(latest) = %v, %v", ok, err)
	}
	if err := a.Remove(ctx, "bb/x-1:latest"); err != nil {
		t.Fatal(err)
	}
	if err := a.Remove(ctx, "bb/x-1:gone"); err != nil {
		t.Errorf("Remove of a missing image = %v, want nil", err)
	}
	slugs, err := a.Running(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"b-2"}, slugs); diff != "" {
		t.Errorf("Running (-want +got):\n%s", diff)
	}
	want := []string{
		"container image tag bb/x-1:20261126T120000Z bb/x-1:latest",
		"container image list --format json",
		"container image list --format json",
		"container image delete bb/x-1:latest",
		"container image list --format json",
		"container list --format json",
	}
	if diff := cmp.Diff(want, run.calls); diff != "" {
		t.Errorf("command lines (-want +got):\n%s", diff)
	}
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
	s := &SmolVM{Run: run, Dir: dir}
	ctx := t.Context()
	id, err := s.Commit(ctx, Target{Slug: "demo-1a2b", Container: "bot-bottle-demo-1a2b", Ref: "bb/demo-1a2b:20261126T120000Z"})
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
	s := &SmolVM{Run: run, Dir: t.TempDir()}
	_, err := s.Commit(t.Context(), Target{Slug: "d-1", Container: "bot-bottle-d-1", Ref: "bb/d-1:20261126T120000Z"})
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
	s := &SmolVM{Run: run, Dir: t.TempDir()}
	slugs, err := s.Running(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"a-1"}, slugs); diff != "" {
		t.Errorf("Running (-want +got):\n%s", diff)
	}
}
