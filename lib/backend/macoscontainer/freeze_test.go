package macoscontainer

import (
	"context"
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
			a := &Freezer{Run: run, TempDir: tmp}
			id, err := a.Commit(t.Context(), freeze.Target{Slug: "demo-1a2b", Container: "bot-bottle-demo-1a2b",
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
	a := &Freezer{Run: run}
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
