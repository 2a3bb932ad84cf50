//go:build linux

package guest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	moby "github.com/moby/moby/client"
)

// The guest's init is tested for real where it can run: a Linux container
// on the Docker engine, started as root with the capabilities the
// macos-container backend gives the agent's container (CHOWN, DAC_OVERRIDE,
// FOWNER, SETUID, SETGID, SETPCAP) and no network, as there.

const baseImage = "bb-base:bookworm"

var (
	egressOnce sync.Once
	egressBin  string
	egressErr  error
)

// engine returns the Docker engine and the base image, or skips t (fails it
// with BB_REQUIRE_DOCKER=1).
func engine(t *testing.T) *moby.Client {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("BB_REQUIRE_DOCKER") == "1" {
		skip = t.Fatalf
	}
	c, err := moby.New(moby.FromEnv)
	if err != nil {
		skip("no docker engine: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if _, err := c.Ping(ctx, moby.PingOptions{NegotiateAPIVersion: true}); err != nil {
		skip("no docker engine: %v", err)
	}
	if _, err := c.ImageInspect(ctx, baseImage); err != nil {
		skip("no %s (scripts/base-image makes it): %v", baseImage, err)
	}
	return c
}

// staticEgress builds the static linux bb-egress the backend mounts in the
// agent, once per test binary.
func staticEgress(t *testing.T) string {
	t.Helper()
	egressOnce.Do(func() {
		dir, err := os.MkdirTemp("", "bb-guest-test-")
		if err != nil {
			egressErr = err
			return
		}
		egressBin = filepath.Join(dir, "bb-egress")
		cmd := exec.Command("go", "build", "-trimpath", "-o", egressBin, "../../cmd/bb-egress")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
		if out, err := cmd.CombinedOutput(); err != nil {
			egressErr = fmt.Errorf("building bb-egress: %v\n%s", err, out)
		}
	})
	if egressErr != nil {
		t.Fatal(egressErr)
	}
	return egressBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if egressBin != "" {
		os.RemoveAll(filepath.Dir(egressBin))
	}
	os.Exit(code)
}

// bottle is one agent container of a test, and its host folder.
type bottle struct {
	c   *moby.Client
	id  string
	dir string
}

// newBottle creates (and starts) the agent's container, whose init runs as
// the backend runs it (the base image has the user agent, uid 1000).
func newBottle(t *testing.T, spec Spec, script string) *bottle {
	t.Helper()
	c := engine(t)
	dir := t.TempDir()
	b := &bottle{c: c, dir: dir}
	guestDir := filepath.Join(dir, "guest")
	outDir := filepath.Join(dir, "out")
	for _, d := range []string{guestDir, outDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(outDir, 0o777)
	bin, err := os.ReadFile(staticEgress(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(guestDir, "bb-egress"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	sb, _ := json.Marshal(spec)
	if err := os.WriteFile(filepath.Join(guestDir, "spec.json"), sb, 0o644); err != nil {
		t.Fatal(err)
	}

	// The sidecar: an HTTP server on a socket the container gets, as the
	// runtime relays the sidecar's socket into the agent's container.
	sock := filepath.Join(dir, "egress.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(sock, 0o755) // as the runtime makes it: not writable by the agent's user
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "sidecar saw %s %s\n", r.Method, r.URL)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	ctx := t.Context()
	res, err := c.ContainerCreate(ctx, moby.ContainerCreateOptions{
		Image: baseImage,
		Config: &container.Config{
			User:       "0:0",
			Entrypoint: []string{"/bb/guest/bb-egress", "guest", "init", "--spec", "/bb/guest/spec.json", "--"},
			Cmd:        []string{"bash", "-c", script},
			Env:        []string{"BOT_BOTTLE_CANARY=not-a-secret", "HTTP_PROXY=http://bb.egress:3128", "HOME=/root"},
			WorkingDir: "/",
			Labels:     map[string]string{"bb.test": "1"},
		},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			CapDrop:     []string{"ALL"},
			CapAdd:      []string{"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "SETPCAP"},
			Mounts: []mount.Mount{
				{Type: mount.TypeBind, Source: guestDir, Target: "/bb/guest", ReadOnly: true},
				{Type: mount.TypeBind, Source: outDir, Target: "/out"},
				{Type: mount.TypeBind, Source: sock, Target: "/bb/egress.sock"},
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	b.id = res.ID
	t.Cleanup(func() {
		c.ContainerRemove(context.Background(), b.id, moby.ContainerRemoveOptions{Force: true})
	})
	if _, err := c.ContainerStart(ctx, b.id, moby.ContainerStartOptions{}); err != nil {
		t.Fatal(err)
	}
	return b
}

// wait waits for the container to exit and returns its status.
func (b *bottle) wait(t *testing.T) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	w := b.c.ContainerWait(ctx, b.id, moby.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case r := <-w.Result:
		return r.StatusCode
	case err := <-w.Error:
		t.Fatalf("waiting for the agent's container: %v\n%s", err, b.log(t))
	}
	return 0
}

func (b *bottle) log(t *testing.T) string {
	res, err := b.c.ContainerLogs(context.Background(), b.id, moby.ContainerLogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		return err.Error()
	}
	defer res.Close()
	var out, errs bytes.Buffer
	stdcopy.StdCopy(&out, &errs, res)
	return out.String() + errs.String()
}

// exec runs cmd in the container as user, with stdin, and returns its
// status and output.
func (b *bottle) exec(t *testing.T, user string, stdin string, cmd ...string) (int, string) {
	t.Helper()
	ctx := t.Context()
	ex, err := b.c.ExecCreate(ctx, b.id, moby.ExecCreateOptions{User: user, Cmd: cmd,
		AttachStdin: stdin != "", AttachStdout: true, AttachStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	at, err := b.c.ExecAttach(ctx, ex.ID, moby.ExecAttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer at.Close()
	if stdin != "" {
		go func() {
			at.Conn.Write([]byte(stdin))
		}()
	}
	var out bytes.Buffer
	stdcopy.StdCopy(&out, &out, at.Reader)
	for range 100 {
		r, err := b.c.ExecInspect(ctx, ex.ID, moby.ExecInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !r.Running {
			return r.ExitCode, out.String()
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("the exec never ended")
	return 0, ""
}

func guestSpec() Spec {
	return Spec{
		User: "agent",
		Files: []File{
			{Path: "/usr/local/share/ca-certificates/bb-egress.crt", Mode: 0o644, Owner: OwnerRoot, Content: []byte("BB CA\n")},
			{Path: "/etc/ssl/certs/ca-certificates.crt", Mode: 0o644, Owner: OwnerRoot, Content: []byte("BB CA\n"), AppendOnce: true},
			{Path: "~/.gitconfig", Mode: 0o644, Owner: OwnerAgent, Content: []byte("[user]\n\tname = Bot\n")},
			{Path: "~/.bb/prompt.md", Mode: 0o600, Owner: OwnerAgent, Content: []byte("do the thing\n")},
			{Path: "~/.claude/state.json", Mode: 0o644, Owner: OwnerAgent, Content: []byte("{}\n"), Keep: true},
			{Path: "/srv/repo/refs", Mode: 0o755, Owner: OwnerAgent, Dir: true},
			{Path: "/srv/repo/HEAD", Mode: 0o644, Owner: OwnerAgent, Content: []byte("ref: refs/heads/main\n")},
		},
		// A fresh volume's root is root's: the init gives it to the agent,
		// who then has its seed.
		AgentDirs: []string{"/srv/repo"},
		Hosts:     []string{"127.0.0.1 bb.egress"},
		Relay:     Relay{Listen: "127.0.0.1:3128", Socket: "/bb/egress.sock", Mode: 0o666},
		Socket:    "/run/bb/attach.sock",
	}
}

// Provisioned as root, the agent runs with no root, no capability in any
// set, no new privileges, no network but its relay, which reaches the
// sidecar by name.
func TestInitGivesRootUpAndProvisions(t *testing.T) {
	b := newBottle(t, guestSpec(), `{
		echo "uid $(id -u) gid $(id -g) groups $(id -G)"
		grep -E '^(CapInh|CapPrm|CapEff|CapBnd|CapAmb|NoNewPrivs)' /proc/self/status
		echo "home $HOME user $USER canary $BOT_BOTTLE_CANARY"
		cat ~/.gitconfig ~/.bb/prompt.md ~/.claude/state.json
		stat -c 'owner %U %a %n' ~ ~/.gitconfig ~/.bb ~/.bb/prompt.md /usr/local/share/ca-certificates/bb-egress.crt /run/bb /run/bb/attach.sock /srv/repo /srv/repo/refs /srv/repo/HEAD
		tail -n 1 /etc/ssl/certs/ca-certificates.crt
		grep -c 'BB CA' /etc/ssl/certs/ca-certificates.crt
		grep bb.egress /etc/hosts
		echo "devices $(ls /sys/class/net | tr '\n' ' ')"
		touch /etc/agent-was-here 2>/dev/null && echo "wrote /etc" || echo "/etc is not mine"
		exec 3<>/dev/tcp/bb.egress/3128 && printf 'GET http://example.com/x HTTP/1.0\r\n\r\n' >&3 && cat <&3 | tail -n 1
		exec 3>&-
		(exec 4<>/dev/tcp/1.1.1.1/443) 2>/dev/null && echo "reached 1.1.1.1" || echo "no way to 1.1.1.1"
	} > /out/facts 2>&1; exit 5`)
	if code := b.wait(t); code != 5 {
		t.Fatalf("the container exited %d, want the agent's 5\n%s", code, b.log(t))
	}
	facts, err := os.ReadFile(filepath.Join(b.dir, "out", "facts"))
	if err != nil {
		t.Fatalf("%v\n%s", err, b.log(t))
	}
	for _, want := range []string{
		"uid 1000 gid 1000 groups 1000\n",
		"CapInh:\t0000000000000000\n", "CapPrm:\t0000000000000000\n", "CapEff:\t0000000000000000\n",
		"CapBnd:\t0000000000000000\n", "CapAmb:\t0000000000000000\n", "NoNewPrivs:\t1\n",
		"home /home/agent user agent canary not-a-secret\n",
		"[user]\n\tname = Bot\ndo the thing\n{}\n",
		"owner agent 755 /home/agent\n", "owner agent 644 /home/agent/.gitconfig\n", "owner agent 755 /home/agent/.bb\n",
		"owner agent 600 /home/agent/.bb/prompt.md\n", "owner root 644 /usr/local/share/ca-certificates/bb-egress.crt\n",
		"owner agent 700 /run/bb\n",
		"owner agent 755 /srv/repo\n", "owner agent 755 /srv/repo/refs\n", "owner agent 644 /srv/repo/HEAD\n",
		"BB CA\n1\n", "127.0.0.1 bb.egress\n",
		"devices lo \n", "/etc is not mine\n",
		"sidecar saw GET http://example.com/x\n",
		"no way to 1.1.1.1\n",
	} {
		if !strings.Contains(string(facts), want) {
			t.Errorf("the agent's facts lack %q:\n%s", want, facts)
		}
	}
	if strings.Contains(string(facts), "attach.sock") && !strings.Contains(string(facts), "owner agent 600 /run/bb/attach.sock") {
		t.Errorf("the attach socket is not the agent's alone:\n%s", facts)
	}
	logs := b.log(t)
	if !strings.Contains(logs, "running as uid 1000 gid 1000, with no capabilities and no new privileges") {
		t.Errorf("the init's log: %s", logs)
	}
}

// A client attaching starts the waiting agent, types to it, and has its
// status; a command run through "guest run" has no new privileges.
func TestInitWaitsForTheFirstAttach(t *testing.T) {
	spec := guestSpec()
	spec.WaitAttach = true
	b := newBottle(t, spec, `echo started; read x; echo "got:$x"; exit 9`)
	time.Sleep(500 * time.Millisecond)
	code, out := b.exec(t, "1000:1000", "", "/bb/guest/bb-egress", "guest", "run", "--", "sh", "-c",
		"grep NoNewPrivs /proc/self/status; id -u; exit 4")
	if code != 4 || !strings.Contains(out, "NoNewPrivs:\t1") || !strings.Contains(out, "1000") {
		t.Errorf("guest run = %d %q", code, out)
	}
	code, out = b.exec(t, "1000:1000", "hello\n", "/bb/guest/bb-egress", "guest", "attach", "--socket", "/run/bb/attach.sock")
	if code != 9 || !strings.Contains(out, "started") || !strings.Contains(out, "got:hello") {
		t.Errorf("attach = %d %q\n%s", code, out, b.log(t))
	}
	if code := b.wait(t); code != 9 {
		t.Errorf("the container exited %d, want 9", code)
	}
}

// What the init refuses, before the agent runs: a root agent, a root file
// written through a folder someone else can change, a home that is a
// symlink.
func TestInitRefuses(t *testing.T) {
	for _, tt := range []struct {
		name   string
		spec   func(*Spec)
		script string
		want   string
	}{
		{"root through a world-writable folder", func(s *Spec) {
			s.Files = append(s.Files, File{Path: "/tmp/x", Mode: 0o644, Owner: OwnerRoot, Content: []byte("x")})
		}, "true", "/tmp can be changed by others than root"},
		{"an agent's file outside its home", func(s *Spec) {
			s.Files = append(s.Files, File{Path: "/etc/agent", Mode: 0o644, Owner: OwnerAgent, Content: []byte("x")})
		}, "true", "not in the agent's home"},
		{"a user missing from the image", func(s *Spec) { s.User = "nobody-here" }, "true", `the agent's user "nobody-here" is not in the image's /etc/passwd`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			spec := guestSpec()
			tt.spec(&spec)
			b := newBottle(t, spec, tt.script)
			if code := b.wait(t); code != 3 {
				t.Errorf("the container exited %d, want 3", code)
			}
			if logs := b.log(t); !strings.Contains(logs, tt.want) {
				t.Errorf("the init's log lacks %q:\n%s", tt.want, logs)
			}
		})
	}
}
