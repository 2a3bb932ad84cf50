package macoscontainer

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bb-bottles/bb/lib/backend/macoscontainer/internal/clispec"
)

var (
	fakeOnce sync.Once
	fakeBin  string
	fakeErr  error
)

// fake is the fake container CLI of internal/fakecontainer, built once, in
// a state folder of its own.
type fake struct {
	Tool
	Dir string
}

func newFake(t *testing.T) *fake {
	t.Helper()
	fakeOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bb-fakecontainer-")
		if err != nil {
			fakeErr = err
			return
		}
		fakeBin = filepath.Join(dir, "container")
		cmd := exec.Command("go", "build", "-o", fakeBin, "./internal/fakecontainer")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakeErr = err
			t.Logf("%s", out)
		}
	})
	if fakeErr != nil {
		t.Fatalf("building the fake container CLI: %v", fakeErr)
	}
	// Short: the published sockets live in it, and a socket's path is
	// short on macOS.
	dir, err := os.MkdirTemp("", "bbf")
	if err != nil {
		t.Fatal(err)
	}
	f := &fake{Tool: Tool{Path: fakeBin, Environ: append(os.Environ(), "FAKE_CONTAINER_DIR="+dir)}, Dir: dir}
	t.Cleanup(func() { f.cleanup(t) })
	return f
}

// cleanup stops what the fake left running (published sockets' listeners)
// and removes its folder.
func (f *fake) cleanup(t *testing.T) {
	var st struct {
		Containers []struct {
			Listeners []int `json:"listeners"`
		} `json:"containers"`
	}
	if b, err := os.ReadFile(filepath.Join(f.Dir, "state.json")); err == nil {
		json.Unmarshal(b, &st)
	}
	for _, c := range st.Containers {
		for _, pid := range c.Listeners {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	}
	os.RemoveAll(f.Dir)
}

// calls are the command lines the fake was given.
func (f *fake) calls(t *testing.T) [][]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(f.Dir, "calls.jsonl"))
	if err != nil {
		return nil
	}
	var out [][]string
	for _, l := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var c struct {
			Argv []string `json:"argv"`
		}
		if err := json.Unmarshal(l, &c); err != nil {
			t.Fatal(err)
		}
		out = append(out, c.Argv)
	}
	return out
}

// fault makes calls whose command line contains match fail (or hang).
func (f *fake) fault(t *testing.T, faults ...map[string]any) {
	t.Helper()
	b, _ := json.Marshal(faults)
	if err := os.WriteFile(filepath.Join(f.Dir, "faults.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func (f *fake) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := f.Output(t.Context(), args...)
	if err != nil {
		t.Fatalf("container %s: %v", strings.Join(args, " "), err)
	}
	return string(out)
}

// The fake keeps state across calls, prints list JSON the decoders read,
// refuses what the real CLI refuses, and its containers' folders survive
// an export and a build into a snapshot.
func TestFakeContainerCLI(t *testing.T) {
	f := newFake(t)
	ctx := t.Context()
	build := t.TempDir()
	os.WriteFile(filepath.Join(build, "Dockerfile"), []byte("FROM scratch\nCOPY bb-egress /bb-egress\nENTRYPOINT [\"/bb-egress\", \"serve\"]\n"), 0o644)
	os.WriteFile(filepath.Join(build, "bb-egress"), []byte("binary"), 0o755)
	f.run(t, "build", "--file", filepath.Join(build, "Dockerfile"), "--tag", "bb-egress:abc", "--label", "bb.role=egress", "--progress", "plain", build)

	out := f.run(t, "image", "list", "--format", "json")
	ims, err := DecodeImages([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if len(ims) != 1 || !SameRef(ims[0].Name, "bb-egress:abc") || ims[0].Labels["bb.role"] != "egress" {
		t.Errorf("images = %+v", ims)
	}

	sock := filepath.Join(f.Dir, "e.sock")
	f.run(t, "create", "--name", "side", "--label", "bb.slug=s1", "--publish-socket", sock+":/bb/sock/egress.sock", "bb-egress:abc",
		"--listen", "unix:/bb/sock/egress.sock")
	f.run(t, "start", "side")
	if c, err := net.Dial("unix", sock); err != nil {
		t.Errorf("the published socket does not answer: %v", err)
	} else {
		c.Close()
	}
	if logs := f.run(t, "logs", "side"); !strings.Contains(logs, "bb-egress: listening on /bb/sock/egress.sock") {
		t.Errorf("logs = %q", logs)
	}

	ws := t.TempDir()
	f.run(t, "create", "--name", "agent", "--label", "bb.slug=s1", "--label", "bb.role=agent", "--network", "none", "--no-dns",
		"--volume", ws+":/workspace", "--volume", sock+":/bb/egress.sock", "--env", "A=1", "--cap-drop", "ALL", "bb-egress:abc", "sleep", "9")
	f.run(t, "start", "agent")
	cs, err := DecodeContainers([]byte(f.run(t, "list", "--all", "--format", "json")))
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 || !cs[0].Running() || cs[1].Labels["bb.role"] != "agent" {
		t.Errorf("containers = %+v", cs)
	}
	var exit *ToolError
	_, err = f.Output(ctx, "exec", "agent", "sh", "-c", "echo kept > file; exit 3")
	if !isExit(err, &exit, 3) {
		t.Errorf("exec exit = %v", err)
	}
	tarPath := filepath.Join(t.TempDir(), "rootfs.tar")
	f.run(t, "export", "--output", tarPath, "agent")
	snap := filepath.Dir(tarPath)
	os.WriteFile(filepath.Join(snap, "Dockerfile"), []byte("FROM scratch\nADD rootfs.tar /\n"), 0o644)
	f.run(t, "build", "--file", filepath.Join(snap, "Dockerfile"), "--tag", "bb/s1:20260101T000000Z", "--progress", "plain", snap)
	f.run(t, "create", "--name", "again", "--network", "none", "bb/s1:20260101T000000Z", "sleep", "1")
	f.run(t, "start", "again")
	if got := f.run(t, "exec", "again", "cat", "file"); got != "kept\n" {
		t.Errorf("the snapshot's container has %q", got)
	}

	// What the real CLI refuses.
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"create", "--name", "agent", "bb-egress:abc"}, "already exists"},
		{[]string{"create", "--network", "none", "--network", "default", "bb-egress:abc"}, "no other networks"},
		{[]string{"create", "--volume", "/no/such/dir:/x", "bb-egress:abc"}, "does not exist"},
		{[]string{"create", "nosuchimage:1"}, "not found"},
		{[]string{"delete", "agent"}, "is running"},
		{[]string{"image", "delete", "bb-egress:abc"}, "in use"},
		{[]string{"exec", "nosuch", "true"}, "not found"},
		{[]string{"create", "--pids-limit", "5", "bb-egress:abc"}, "unknown option"},
	} {
		_, err := f.Output(ctx, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("container %s = %v, want an error with %q", strings.Join(tt.args, " "), err, tt.want)
		}
	}
	f.run(t, "stop", "side", "agent", "again")
	if _, err := os.Stat(sock); err == nil {
		t.Error("the published socket outlived its container")
	}
	_, err = f.Output(ctx, "exec", "agent", "true")
	if err == nil || !strings.Contains(err.Error(), "is not running") {
		t.Errorf("exec in a stopped container = %v", err)
	}
	f.run(t, "delete", "side", "agent", "again")

	// Every call was recorded, and every one parses with the table.
	calls := f.calls(t)
	if len(calls) < 20 {
		t.Errorf("%d calls recorded", len(calls))
	}
	parsed := 0
	for _, c := range calls {
		if _, err := clispec.Parse(c); err == nil {
			parsed++
		}
	}
	if parsed != len(calls)-1 {
		t.Errorf("%d of %d calls parse; only --pids-limit should not", parsed, len(calls))
	}
}

func isExit(err error, te **ToolError, code int) bool {
	e, ok := err.(*ToolError)
	if ok {
		*te = e
	}
	return ok && e.Code == code
}

// An old CLI exports only stopped containers; a fault fails or hangs a
// call; without its services the CLI says so.
func TestFakeVersionsAndFaults(t *testing.T) {
	f := newFake(t)
	f.Environ = append(f.Environ, "FAKE_CONTAINER_VERSION=1.1.0")
	vs, err := DecodeVersions([]byte(f.run(t, "system", "version", "--format", "json")))
	if err != nil || vs.CLI != (Version{1, 1, 0}) || vs.Server == nil {
		t.Errorf("versions = %+v, %v", vs, err)
	}
	build := t.TempDir()
	os.WriteFile(filepath.Join(build, "Dockerfile"), []byte("FROM scratch\nCMD [\"sleep\"]\n"), 0o644)
	f.run(t, "build", "--tag", "x:1", build)
	f.run(t, "create", "--name", "cc", "x:1")
	f.run(t, "start", "cc")
	if _, err := f.Output(t.Context(), "export", "--output", filepath.Join(build, "t.tar"), "cc"); err == nil || !strings.Contains(err.Error(), "must be stopped") {
		t.Errorf("export of a running container on 1.1.0 = %v", err)
	}

	f.fault(t, map[string]any{"match": "start cc", "exit": 1, "stderr": "Error: internalError: \"boom\"", "times": 1})
	f.run(t, "stop", "cc")
	if _, err := f.Output(t.Context(), "start", "cc"); err == nil || err.Error() != `container start cc: internalError: "boom"` {
		t.Errorf("faulted start = %v", err)
	}
	f.run(t, "start", "cc") // only once

	f.fault(t, map[string]any{"match": "build", "hang": true})
	ctx, cancel := contextWithTimeout(t, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := f.Output(ctx, "build", "--tag", "y:1", build); err == nil {
		t.Error("a hanging build returned")
	}
	if time.Since(start) > 4*time.Second {
		t.Error("a hanging build was not interrupted")
	}

	down := *f
	down.Environ = append(f.Environ, "FAKE_CONTAINER_APISERVER=down")
	vs, err = DecodeVersions([]byte(down.run(t, "system", "version", "--format", "json")))
	if err != nil || vs.Server != nil {
		t.Errorf("versions without the services = %+v, %v", vs, err)
	}
	if _, err := down.Output(t.Context(), "list", "--all", "--format", "json"); err == nil || !strings.Contains(err.Error(), "container system start") {
		t.Errorf("list without the services = %v", err)
	}
}

func contextWithTimeout(t *testing.T, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(t.Context(), d)
}
