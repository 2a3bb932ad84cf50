package docker

import (
	"context"
	"fmt"
	"io"
	"maps"
	"regexp"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/names"
)

// LabelImageHash holds the full content hash an agent image is tagged by.
const LabelImageHash = "bb.image.hash"

// BaseImage is the offline base that scripts/base-image makes, for the
// BASE build argument of agent Dockerfiles where no registry is reachable.
const BaseImage = "bb-base:bookworm"

// AgentImageSpec is what an agent image is built from.
type AgentImageSpec struct {
	// Repo is the image's repository, e.g. bb-agent-shell; the tag is a
	// content hash.
	Repo string
	// Dockerfile is the Dockerfile's text.
	Dockerfile []byte
	// Files are the other files of the build context, by relative path.
	Files map[string]image.File
	// BuildArgs are the build arguments (BASE: the image to build FROM).
	BuildArgs map[string]string
	// Labels are added to the image, besides bb.role=image.
	Labels map[string]string
}

var repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// EnsureAgentImage returns the image built from spec, tagged <repo>:<12 hex
// of the hash of its Dockerfile, files, build args and labels>, and builds
// it only when that tag is absent; built says whether it did. Progress goes
// to progress (nil: nowhere).
func EnsureAgentImage(ctx context.Context, api Images, spec AgentImageSpec, progress io.Writer) (ref string, built bool, err error) {
	if !repoRE.MatchString(spec.Repo) {
		return "", false, exit.Usagef("agent image repository %q: want lowercase letters, digits and separators", spec.Repo)
	}
	labels := withTestLabels(spec.Labels)
	labels[names.LabelRole] = names.RoleImage
	c := image.Context{Dockerfile: spec.Dockerfile, Files: spec.Files}
	sum, err := image.Hash(c, spec.BuildArgs, labels)
	if err != nil {
		return "", false, exit.Usage(fmt.Errorf("agent image %s: %w", spec.Repo, err))
	}
	ref = spec.Repo + ":" + image.Tag(sum)
	ok, have, err := imageExists(ctx, api, ref)
	if err != nil {
		return "", false, err
	}
	if ok && have[LabelImageHash] == sum {
		return ref, false, nil
	}
	labels = maps.Clone(labels)
	labels[LabelImageHash] = sum
	if err := buildImage(ctx, api, ref, c, spec.BuildArgs, labels, progress); err != nil {
		if base := spec.BuildArgs["BASE"]; base != "" {
			if ok, _, ierr := imageExists(ctx, api, base); ierr == nil && !ok {
				err = exit.WithHint(err, fmt.Sprintf("the base image %s is not in the engine: "+
					"make the offline one with scripts/base-image and build with BASE=%s", base, BaseImage))
			}
		}
		return "", false, err
	}
	return ref, true, nil
}
