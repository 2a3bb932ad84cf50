// Package docker holds the Docker backend (backend.Backend, with every
// optional capability): the engine calls of a launch's stages — the images a
// bottle runs (the egress sidecar and the agent), built without any
// registry; its networks; the sidecar and the provisioned agent — and of
// stop, status, exec, attach, reload, restart and freeze, through the
// engine's Go client. What every backend shares is lib/backend's.
package docker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
)

// Images is the part of the engine client that building images needs;
// *client.Client has it.
type Images interface {
	ImageInspect(ctx context.Context, ref string, opts ...client.ImageInspectOption) (client.ImageInspectResult, error)
	ImageBuild(ctx context.Context, buildContext io.Reader, opts client.ImageBuildOptions) (client.ImageBuildResult, error)
	ImageRemove(ctx context.Context, image string, opts client.ImageRemoveOptions) (client.ImageRemoveResult, error)
}

// Connect returns a client for the engine named by the environment
// (DOCKER_HOST and friends), with its API version negotiated down to the
// engine's: the engine may be older than the client (API 1.41 is Docker 20.10).
func Connect(ctx context.Context) (*client.Client, error) {
	c, err := client.New(client.FromEnv)
	if err != nil {
		return nil, exit.Backend(fmt.Errorf("connecting to docker: %w", err))
	}
	if _, err := c.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
		c.Close()
		return nil, exit.Backend(fmt.Errorf("connecting to docker: %w", err),
			"is the docker engine running, and may this user use its socket?")
	}
	return c, nil
}

// imageExists reports whether ref names an image in the engine, and its
// labels when it does.
func imageExists(ctx context.Context, api Images, ref string) (bool, map[string]string, error) {
	res, err := api.ImageInspect(ctx, ref)
	if isNotFound(err) {
		return false, nil, nil
	}
	if err != nil {
		return false, nil, exit.Backend(fmt.Errorf("inspecting image %s: %w", ref, err))
	}
	var labels map[string]string
	if res.Config != nil {
		labels = res.Config.Labels
	}
	return true, labels, nil
}

func isNotFound(err error) bool { return err != nil && cerrdefs.IsNotFound(err) }

// unwrapPath drops a *fs.PathError's operation and path, which the message
// around it already names.
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func trimSlash(s string) string {
	if len(s) > 0 && s[0] == '/' {
		return s[1:]
	}
	return s
}
