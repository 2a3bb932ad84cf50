package docker

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// failingAgentStart is the engine, but the agent's container does not start;
// it counts the attach connections closed.
type failingAgentStart struct {
	*client.Client
	opened, closed atomic.Int32
}

func (f *failingAgentStart) ContainerAttach(ctx context.Context, id string, o client.ContainerAttachOptions) (client.ContainerAttachResult, error) {
	res, err := f.Client.ContainerAttach(ctx, id, o)
	if err == nil {
		f.opened.Add(1)
		res.Conn = &closeCounter{Conn: res.Conn, n: &f.closed}
	}
	return res, err
}

func (f *failingAgentStart) ContainerStart(ctx context.Context, id string, o client.ContainerStartOptions) (client.ContainerStartResult, error) {
	in, err := f.Client.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err == nil && in.Container.Config.Labels[LabelRole] == RoleAgent {
		return client.ContainerStartResult{}, errors.New("injected: the agent does not start")
	}
	return f.Client.ContainerStart(ctx, id, o)
}

type closeCounter struct {
	net.Conn
	n    *atomic.Int32
	once atomic.Bool
}

func (c *closeCounter) Close() error {
	if c.once.CompareAndSwap(false, true) {
		c.n.Add(1)
	}
	return c.Conn.Close()
}

// The terminal session opened just before the agent starts is closed when
// the start fails, with the rest of the launch.
func TestLaunchClosesAttachWhenStartFails(t *testing.T) {
	c := needBase(t)
	slug := newSlug("startfail")
	p, raw := shellPlan(t, slug, nil)
	st := &state.Store{Dir: t.TempDir()}
	cleanupBottle(t, c, slug)
	api := &failingAgentStart{Client: c}
	o := launchOptions(t, p, raw, st)
	o.Attach = true
	_, err := Launch(t.Context(), api, o)
	var se *StepError
	if !errors.As(err, &se) || se.Step != "starting the agent" || !strings.Contains(err.Error(), "injected") {
		t.Fatalf("Launch = %v, want a failure starting the agent", err)
	}
	if api.opened.Load() != 1 || api.closed.Load() != 1 {
		t.Errorf("attach sessions: %d opened, %d closed", api.opened.Load(), api.closed.Load())
	}
}

// The agent's container starts with its sidecar's, but its command only
// once the sidecar answers: the first thing it sees is bb.egress in its
// hosts file, on a first launch of an image (started after the sidecar)
// and on later ones (started with it, waiting in a shell).
func TestAgentCommandWaitsForSidecar(t *testing.T) {
	c := needBase(t)
	st := &state.Store{Dir: t.TempDir()}
	for i := range 2 {
		slug := newSlug("wait")
		ws := t.TempDir()
		os.Chmod(ws, 0o777)
		p, _ := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
		p.Agent.Command = []string{"sh", "-c", "grep -c 'bb.egress$' /etc/hosts > /workspace/started; exec sleep 600"}
		raw, _ := json.Marshal(p)
		cleanupBottle(t, c, slug)
		if _, err := Launch(t.Context(), c, launchOptions(t, p, raw, st)); err != nil {
			t.Fatal(err)
		}
		var got []byte
		for range 100 {
			if got, _ = os.ReadFile(filepath.Join(ws, "started")); len(got) > 0 {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if strings.TrimSpace(string(got)) != "1" {
			t.Errorf("launch %d: the agent's command started seeing %q bb.egress lines", i+1, got)
		}
		in, err := c.ContainerInspect(t.Context(), p.Docker.AgentContainer, client.ContainerInspectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		waits := len(in.Container.Config.Cmd) > 3 && in.Container.Config.Cmd[3] == "bb-wait"
		if waits != (i == 1) {
			t.Errorf("launch %d: the command waits in a shell: %v (%q)", i+1, waits, in.Container.Config.Cmd)
		}
	}
}
