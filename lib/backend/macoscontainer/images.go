package macoscontainer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/names"
)

// Labels on the images this backend builds.
const (
	// LabelImageHash holds the full content hash an agent image is tagged
	// by, so that a tag made by anything else is not mistaken for ours.
	LabelImageHash = "bb.image.hash"
	// LabelEgressSHA256 and LabelEgressLayout are the sidecar image's: its
	// binary's SHA-256, and the version of sidecarDockerfile.
	LabelEgressSHA256 = "bb.egress.sha256"
	LabelEgressLayout = "bb.egress.layout"
)

// SidecarRepo is the repository of the sidecar's images.
const SidecarRepo = "bb-egress"

// sidecarDockerfile is the sidecar's image: the static bb-egress, and the
// folder of its socket, which must be on the image's own filesystem (the
// runtime's relay finds a published socket there) and the sidecar's user's
// to create the socket in. {{UID}} and {{GID}} are the person's.
const sidecarDockerfile = `FROM scratch
COPY bb-egress /bb-egress
COPY --chown={{UID}}:{{GID}} sock /bb/sock
ENTRYPOINT ["/bb-egress", "serve"]
`

// sidecarLayout versions sidecarDockerfile: an image of another layout is
// rebuilt.
const sidecarLayout = "mc1"

// images builds and finds images with the CLI.
type images struct {
	tool *Tool
	// testLabels go on every image (bb.test=1 and the test run, in tests).
	testLabels map[string]string
}

// find returns the image the CLI lists as ref, or nil.
func (im *images) find(ctx context.Context, ref string) (*Image, error) {
	out, err := im.tool.Output(ctx, "image", "list", "--format", "json")
	if err != nil {
		return nil, fmt.Errorf("listing images: %w", err)
	}
	list, err := DecodeImages(out)
	if err != nil {
		return nil, err
	}
	for i := range list {
		if SameRef(list[i].Name, ref) {
			return &list[i], nil
		}
	}
	return nil, nil
}

// build builds c as ref with the CLI, from a copy of c in a temporary
// folder (the CLI takes a folder, not a stream), its progress on progress.
func (im *images) build(ctx context.Context, ref string, c image.Context, args, labels map[string]string, progress io.Writer) error {
	dir, err := os.MkdirTemp("", "bb-build-")
	if err != nil {
		return fmt.Errorf("building image %s: %w", ref, err)
	}
	defer os.RemoveAll(dir)
	if err := writeContext(dir, c); err != nil {
		return fmt.Errorf("building image %s: %w", ref, err)
	}
	all := maps.Clone(labels)
	if all == nil {
		all = map[string]string{}
	}
	maps.Copy(all, im.testLabels)
	if progress == nil {
		progress = io.Discard
	}
	fmt.Fprintf(progress, "bb-launch: building %s\n", ref)
	_, err = im.tool.Run(ctx, Call{Args: buildArgs(filepath.Join(dir, image.DockerfileName), ref, args, all, dir),
		Stdout: progress, Stderr: progress})
	if err != nil {
		return fmt.Errorf("building image %s: %w", ref, err)
	}
	got, err := im.find(ctx, ref)
	if err != nil {
		return err
	}
	if got == nil {
		return fmt.Errorf("building image %s: the CLI reported success but lists no such image", ref)
	}
	return nil
}

// writeContext writes c into dir: its Dockerfile and files, with their
// modes.
func writeContext(dir string, c image.Context) error {
	if _, err := image.Hash(c, nil, nil); err != nil { // checks every path
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, image.DockerfileName), c.Dockerfile, 0o644); err != nil {
		return err
	}
	for name, f := range c.Files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(f.Mode & 0o777)
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(p, f.Data, mode); err != nil {
			return err
		}
		if err := os.Chmod(p, mode); err != nil {
			return err
		}
	}
	return nil
}

// AgentImageSpec is what an agent image is built from.
type AgentImageSpec struct {
	// Repo is the image's repository (bb-agent-shell); the tag is a hash.
	Repo       string
	Dockerfile []byte
	Files      map[string]image.File
	BuildArgs  map[string]string
	Labels     map[string]string
}

var repoRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$`)

// ensureAgent returns the image built from spec, tagged <repo>:<12 hex of
// the hash of its Dockerfile, files, build arguments and labels>, building
// it only when the CLI lists no such image of that hash.
func (im *images) ensureAgent(ctx context.Context, spec AgentImageSpec, progress io.Writer) (ref string, built bool, err error) {
	if !repoRE.MatchString(spec.Repo) {
		return "", false, fmt.Errorf("agent image repository %q: want lowercase letters, digits and separators", spec.Repo)
	}
	labels := maps.Clone(spec.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, im.testLabels)
	labels[names.LabelRole] = names.RoleImage
	c := image.Context{Dockerfile: spec.Dockerfile, Files: spec.Files}
	sum, err := image.Hash(c, spec.BuildArgs, labels)
	if err != nil {
		return "", false, fmt.Errorf("agent image %s: %w", spec.Repo, err)
	}
	ref = spec.Repo + ":" + image.Tag(sum)
	have, err := im.find(ctx, ref)
	if err != nil {
		return "", false, err
	}
	if have != nil && have.Labels[LabelImageHash] == sum {
		return ref, false, nil
	}
	labels[LabelImageHash] = sum
	if err := im.build(ctx, ref, c, spec.BuildArgs, labels, progress); err != nil {
		return "", false, err
	}
	return ref, true, nil
}

// ensureSidecar returns the sidecar's image for the static bb-egress at
// binPath, run as uid:gid, building it FROM scratch when the CLI lists no
// such image. Its tag hashes the binary, the layout and the user.
func (im *images) ensureSidecar(ctx context.Context, binPath string, uid, gid int, progress io.Writer) (string, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return "", fmt.Errorf("reading the sidecar binary: %w", err)
	}
	// The image has no libc, and the agent's init is this binary too.
	if err := backend.CheckStatic(binPath, bin); err != nil {
		return "", err
	}
	sum, err := image.FileHash(bytes.NewReader(bin))
	if err != nil {
		return "", err
	}
	df := bytes.ReplaceAll([]byte(sidecarDockerfile), []byte("{{UID}}"), []byte(strconv.Itoa(uid)))
	df = bytes.ReplaceAll(df, []byte("{{GID}}"), []byte(strconv.Itoa(gid)))
	c := image.Context{Dockerfile: df, Files: map[string]image.File{
		"bb-egress":  {Data: bin, Mode: 0o755},
		"sock/.keep": {Data: nil, Mode: 0o644},
	}}
	labels := map[string]string{names.LabelRole: names.RoleEgress, LabelEgressSHA256: sum, LabelEgressLayout: sidecarLayout}
	maps.Copy(labels, im.testLabels)
	tagSum, err := image.Hash(image.Context{Dockerfile: df}, map[string]string{"binary": sum}, labels)
	if err != nil {
		return "", err
	}
	ref := SidecarRepo + ":" + image.Tag(tagSum)
	have, err := im.find(ctx, ref)
	if err != nil {
		return "", err
	}
	if have != nil && have.Labels[LabelEgressSHA256] == sum && have.Labels[LabelEgressLayout] == sidecarLayout {
		return ref, nil
	}
	if err := im.build(ctx, ref, c, nil, labels, progress); err != nil {
		return "", err
	}
	return ref, nil
}

// remove deletes ref; one the CLI does not list is no error.
func (im *images) remove(ctx context.Context, ref string) error {
	have, err := im.find(ctx, ref)
	if err != nil || have == nil {
		return err
	}
	if _, err := im.tool.Output(ctx, "image", "delete", ref); err != nil {
		var te *ToolError
		if errors.As(err, &te) {
			return fmt.Errorf("removing image %s: %w", ref, err)
		}
		return err
	}
	return nil
}
