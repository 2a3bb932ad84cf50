package docker

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/moby/moby/client"

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
