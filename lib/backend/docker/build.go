package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"time"

	"github.com/moby/moby/api/types/build"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/image"
)

// testLabels are added to every image this package builds; tests set
// bb.test=1 here so that they can find and remove what they built.
var testLabels map[string]string

// buildImage builds c as ref through the engine's API and checks that ref
// exists afterwards. It uses the classic builder: BuildKit over the API needs
// a session, and the images here need nothing it adds.
func buildImage(ctx context.Context, api Images, ref string, c image.Context,
	args, labels map[string]string, progress io.Writer) error {
	tarball, err := c.Tar()
	if err != nil {
		return fmt.Errorf("building image %s: %w", ref, err)
	}
	buildArgs := make(map[string]*string, len(args))
	for k, v := range args {
		buildArgs[k] = &v
	}
	res, err := api.ImageBuild(ctx, bytes.NewReader(tarball), client.ImageBuildOptions{
		Tags:      []string{ref},
		BuildArgs: buildArgs,
		Labels:    labels,
		// Never leave a failed step's container behind: it would carry
		// none of bb's labels.
		Remove:      true,
		ForceRemove: true,
		Version:     build.BuilderV1,
	})
	if err != nil {
		return exit.Backend(fmt.Errorf("building image %s: %w", ref, err))
	}
	defer res.Body.Close()
	start := time.Now()
	p := newProgress(progress, "building "+ref)
	if err := p.consume(res.Body); err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		var be *BuildError
		if errors.As(err, &be) && progress != nil && progress != io.Discard {
			return exit.Backend(fmt.Errorf("building image %s: %w", ref, err),
				"the failing step's output is above")
		}
		return exit.Backend(fmt.Errorf("building image %s: %w", ref, err))
	}
	got, err := api.ImageInspect(ctx, ref)
	if isNotFound(err) {
		return exit.Backend(fmt.Errorf("building image %s: the engine reported success but made no image", ref))
	}
	if err != nil {
		return exit.Backend(fmt.Errorf("inspecting image %s: %w", ref, err))
	}
	// Two builds of one content-hash tag at once (two launches, or test
	// packages in parallel) both succeed, and the later tag leaves the
	// earlier image untagged. Its twin holds the tag: remove it, unless a
	// container already uses it.
	if p.builtID != "" && got.ID != p.builtID {
		_, _ = api.ImageRemove(ctx, p.builtID, client.ImageRemoveOptions{PruneChildren: true})
	}
	if p.tty {
		// The live line is gone; say what it made.
		fmt.Fprintf(p.w, "built %s in %v\n", ref, time.Since(start).Round(100*time.Millisecond))
	}
	return nil
}

// withTestLabels returns labels plus testLabels, without changing labels.
func withTestLabels(labels map[string]string) map[string]string {
	out := make(map[string]string, len(labels)+len(testLabels))
	maps.Copy(out, labels)
	maps.Copy(out, testLabels)
	return out
}
