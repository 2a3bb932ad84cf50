package docker

import (
	"context"
	"io"
	"strings"
	"testing"

	mimage "github.com/moby/moby/api/types/image"
	"github.com/moby/moby/client"

	"github.com/bb-bottles/bb/lib/image"
)

// twinEngine answers a build with the image mine, while its tag names
// tagged: what the engine says when another build of the same tag finished
// just after this one.
type twinEngine struct {
	mine, tagged string
	removed      []string
}

func (e *twinEngine) ImageBuild(context.Context, io.Reader, client.ImageBuildOptions) (client.ImageBuildResult, error) {
	stream := `{"stream":"Step 1/1 : FROM scratch\n"}` + "\n" +
		`{"aux":{"ID":"` + e.mine + `"}}` + "\n" +
		`{"stream":"Successfully built x\n"}` + "\n"
	return client.ImageBuildResult{Body: io.NopCloser(strings.NewReader(stream))}, nil
}

func (e *twinEngine) ImageInspect(context.Context, string, ...client.ImageInspectOption) (client.ImageInspectResult, error) {
	return client.ImageInspectResult{InspectResponse: mimage.InspectResponse{ID: e.tagged}}, nil
}

func (e *twinEngine) ImageRemove(_ context.Context, id string, _ client.ImageRemoveOptions) (client.ImageRemoveResult, error) {
	e.removed = append(e.removed, id)
	return client.ImageRemoveResult{}, nil
}

func TestBuildRemovesItsTwinWhenItLostTheTag(t *testing.T) {
	for _, tc := range []struct {
		name, mine, tagged string
		removed            []string
	}{
		{"won the tag", "sha256:aaa", "sha256:aaa", nil},
		{"lost the tag", "sha256:aaa", "sha256:bbb", []string{"sha256:aaa"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := &twinEngine{mine: tc.mine, tagged: tc.tagged}
			err := buildImage(t.Context(), e, "bb-egress:0123456789ab",
				image.Context{Dockerfile: []byte("FROM scratch\n")}, nil, nil, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(e.removed, ",") != strings.Join(tc.removed, ",") {
				t.Errorf("removed %v, want %v", e.removed, tc.removed)
			}
		})
	}
}
