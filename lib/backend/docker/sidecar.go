package docker

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/bb-bottles/bb/lib/backend"
	"github.com/bb-bottles/bb/lib/image"
	"github.com/bb-bottles/bb/lib/names"
)

// SidecarRepo is the repository of the sidecar's images; each is tagged with
// the first 12 hex digits of its binary's SHA-256.
const SidecarRepo = "bb-egress"

// LabelEgressSHA256 holds the full SHA-256 of the image's bb-egress binary,
// so a tag made by anything else is not mistaken for ours.
const LabelEgressSHA256 = "bb.egress.sha256"

// sidecarDockerfile is all the sidecar image is: one static binary, no
// shell, run as an unprivileged user. The tag hashes only the binary, so a
// change here must also change sidecarLayout.
const sidecarDockerfile = `FROM scratch
COPY bb-egress /bb-egress
USER 65532:65532
ENTRYPOINT ["/bb-egress", "serve"]
`

// LabelEgressLayout versions sidecarDockerfile: an image of another layout
// is rebuilt.
const LabelEgressLayout = "bb.egress.layout"

const sidecarLayout = "1"

// EnsureSidecarImage returns the sidecar image for the static bb-egress
// binary at binPath, building it FROM scratch when its tag is absent.
func EnsureSidecarImage(ctx context.Context, api Images, binPath string, progress io.Writer) (string, error) {
	bin, err := os.ReadFile(binPath)
	if err != nil {
		return "", fmt.Errorf("reading the sidecar binary: %w", err)
	}
	if err := backend.CheckStatic(binPath, bin); err != nil {
		return "", err
	}
	sum, err := image.FileHash(bytes.NewReader(bin))
	if err != nil {
		return "", fmt.Errorf("hashing %s: %w", binPath, err)
	}
	ref := SidecarRepo + ":" + sidecarTag(sum)
	labels := map[string]string{
		names.LabelRole:   "egress",
		LabelEgressSHA256: sum,
		LabelEgressLayout: sidecarLayout,
	}
	ok, have, err := imageExists(ctx, api, ref)
	if err != nil {
		return "", err
	}
	if ok && have[LabelEgressSHA256] == sum && have[LabelEgressLayout] == sidecarLayout {
		return ref, nil
	}
	c := image.Context{
		Dockerfile: []byte(sidecarDockerfile),
		Files:      map[string]image.File{"bb-egress": {Data: bin, Mode: 0o755}},
	}
	if err := buildImage(ctx, api, ref, c, nil, withTestLabels(labels), progress); err != nil {
		return "", err
	}
	return ref, nil
}

// sidecarTag names the sidecar image of the binary whose SHA-256 is sum:
// its first 12 hex digits. Test runs add labels of their own, and then the
// tag also covers them, as agent images' tags cover theirs: a test binary
// sweeping its own images must never remove one that another, running
// beside it, shares.
func sidecarTag(sum string) string {
	if len(testLabels) == 0 {
		return image.Tag(sum)
	}
	keys := slices.Sorted(maps.Keys(testLabels))
	h := sha256.New()
	io.WriteString(h, sum)
	for _, k := range keys {
		fmt.Fprintf(h, "\n%s=%s", k, testLabels[k])
	}
	return image.Tag(hex.EncodeToString(h.Sum(nil)))
}
