package macoscontainer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The JSON of docs/command-reference.md at 1.2.2, "container system
// version", JSON Output, as printed there.
func TestDecodeVersionsAsDocumented(t *testing.T) {
	vs, err := DecodeVersions(readTestdata(t, "system-version.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := Versions{CLI: Version{1, 2, 3}, Server: &Version{1, 2, 3}}
	if diff := cmp.Diff(want, vs); diff != "" {
		t.Errorf("versions (-want +got):\n%s", diff)
	}
	// Without an API server, only the CLI's row.
	vs, err = DecodeVersions([]byte(`[{"appName":"container","buildType":"release","commit":"abc","version":"1.0.0"}]`))
	if err != nil || vs.Server != nil || vs.CLI != (Version{1, 0, 0}) {
		t.Errorf("CLI only = %+v, %v", vs, err)
	}
	for _, bad := range []string{`{}`, `[]`, `[{"appName":"container","version":"dev"}]`} {
		if _, err := DecodeVersions([]byte(bad)); err == nil {
			t.Errorf("DecodeVersions(%s) succeeded", bad)
		}
	}
}

func TestVersionOrder(t *testing.T) {
	for _, tt := range []struct {
		a, b Version
		less bool
	}{
		{Version{0, 12, 3}, Version{1, 0, 0}, true},
		{Version{1, 0, 0}, Version{1, 0, 0}, false},
		{Version{1, 2, 0}, Version{1, 2, 1}, true},
		{Version{1, 10, 0}, Version{1, 9, 9}, false},
	} {
		if got := tt.a.Less(tt.b); got != tt.less {
			t.Errorf("%v < %v = %v", tt.a, tt.b, got)
		}
	}
	if v, err := ParseVersion("container-apiserver version 1.2.2 (build: release, commit: 0190097)"); err != nil || v != (Version{1, 2, 2}) {
		t.Errorf("ParseVersion = %v, %v", v, err)
	}
}

// container list --format json as 1.2.2 encodes ManagedContainer
// (Sources/ContainerResource/Container/ManagedContainer.swift: id,
// configuration, status {state, networks, startedDate}; keys sorted).
func TestDecodeContainersOfTheSource(t *testing.T) {
	cs, err := DecodeContainers(readTestdata(t, "container-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Container{
		{ID: "bot-bottle-demo-1a2b", Image: "docker.io/library/bb-agent-shell:3f2a9c81d0e4", State: "running",
			Labels: map[string]string{"bb.agent": "demo", "bb.role": "agent", "bb.slug": "demo-1a2b"}},
		{ID: "bot-bottle-demo-1a2b-egress", Image: "docker.io/library/bb-egress:5d41402abc4b", State: "stopped",
			Labels: map[string]string{"bb.agent": "demo", "bb.role": "egress", "bb.slug": "demo-1a2b"}},
	}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
	if !cs[0].Running() || cs[1].Running() {
		t.Error("Running() does not follow the state")
	}
}

// The example of docs/how-to.md at 1.2.2 ("Get container or image
// details"), which still shows the shape of releases before 1.0.0: status
// a string beside configuration.
func TestDecodeContainersOfTheHowTo(t *testing.T) {
	cs, err := DecodeContainers(readTestdata(t, "howto-inspect.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Container{{ID: "my-web-server", State: "running", Labels: map[string]string{}}}
	if diff := cmp.Diff(want, cs); diff != "" {
		t.Errorf("containers (-want +got):\n%s", diff)
	}
}

func TestDecodeContainersRefusesWhatItCannotRead(t *testing.T) {
	for _, bad := range []string{
		`{"id":"x"}`,
		`[{"configuration":{"labels":{}},"status":{"state":"running"}}]`,
		`[{"id":"x","configuration":{}}]`,
		`[{"id":"x","configuration":{},"status":{"networks":[]}}]`,
		`[{"id":"x","configuration":{},"status":7}]`,
	} {
		if _, err := DecodeContainers([]byte(bad)); err == nil {
			t.Errorf("DecodeContainers(%s) succeeded", bad)
		}
	}
	if cs, err := DecodeContainers([]byte("[]\n")); err != nil || len(cs) != 0 {
		t.Errorf("empty list = %v, %v", cs, err)
	}
}

// container image list --format json as 1.2.2 encodes ImageResource
// (Sources/ContainerResource/Image/ImageResource.swift: id, configuration
// {creationDate, name, descriptor}, variants; an attestation variant of
// platform unknown/unknown among them).
func TestDecodeImagesOfTheSource(t *testing.T) {
	ims, err := DecodeImages(readTestdata(t, "image-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Image{
		{Name: "docker.io/library/bb-agent-shell:3f2a9c81d0e4",
			Digest: "sha256:6f1d0c0f2a4b8a0e7c3b9d1e5f7a9c2b4d6e8f0a1b3c5d7e9f1a2b3c4d5e6f70",
			Labels: map[string]string{"bb.image.hash": "3f2a9c81d0e4b7c6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2", "bb.role": "image"}},
		{Name: "docker.io/bb/demo-1a2b:20260810T092000Z", Digest: "sha256:77aa",
			Labels: map[string]string{"bb.role": "snapshot", "bb.slug": "demo-1a2b", "org.opencontainers.image.ref.name": "20260810T092000Z"}},
	}
	if diff := cmp.Diff(want, ims); diff != "" {
		t.Errorf("images (-want +got):\n%s", diff)
	}
	// The shape before 1.0.0, which the freezer read (and so read
	// nothing of 1.0.0's).
	old, err := DecodeImages([]byte(`[{"reference":"docker.io/bb/x:1","descriptor":{"digest":"sha256:1"}}]`))
	if err != nil || len(old) != 1 || old[0].Name != "docker.io/bb/x:1" || old[0].Digest != "sha256:1" {
		t.Errorf("0.x shape = %+v, %v", old, err)
	}
	if _, err := DecodeImages([]byte(`[{"id":"x","variants":[]}]`)); err == nil {
		t.Error("an image without a name decoded")
	}
}

func TestDecodeVolumesOfTheSource(t *testing.T) {
	vs, err := DecodeVolumes(readTestdata(t, "volume-list.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Volume{{Name: "bot-bottle-demo-1a2b-git", Labels: map[string]string{"bb.role": "git", "bb.slug": "demo-1a2b"}}}
	if diff := cmp.Diff(want, vs); diff != "" {
		t.Errorf("volumes (-want +got):\n%s", diff)
	}
}

func TestSameRef(t *testing.T) {
	for _, tt := range []struct {
		listed, ref string
		same        bool
	}{
		{"docker.io/library/bb-egress:abc", "bb-egress:abc", true},
		{"docker.io/bb/demo-1a2b:latest", "bb/demo-1a2b:latest", true},
		{"docker.io/bb/demo-1a2b:latest", "bb/demo-1a2b", true},
		{"registry.example.com/bb/demo-1a2b:t", "bb/demo-1a2b:t", true},
		{"docker.io/library/bb-egress:abc", "bb-egress:abcd", false},
		{"docker.io/library/xbb-egress:abc", "bb-egress:abc", false},
		{"docker.io/bb/demo-1a2b:t1", "bb/demo-1a2b:t", false},
	} {
		if got := SameRef(tt.listed, tt.ref); got != tt.same {
			t.Errorf("SameRef(%q, %q) = %v", tt.listed, tt.ref, got)
		}
	}
	if got := NormalizeRef("localhost:5000/x"); got != "localhost:5000/x:latest" {
		t.Errorf("NormalizeRef = %q", got)
	}
}

// script writes an executable shell script standing in for the CLI.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "container")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestToolRunPassesValuesInItsEnvironmentOnly(t *testing.T) {
	tool := &Tool{Path: script(t, `echo "args: $*"; echo "A=$A T=$EGRESS_TOKEN_X S=$EGRESS_TOKEN_SET"`),
		Environ: []string{"A=host", "EGRESS_TOKEN_X=leak", "PATH=" + os.Getenv("PATH")}}
	out, err := tool.Run(t.Context(), Call{Args: []string{"create", "--env", "EGRESS_TOKEN_SET", "img"}, Env: []string{"A=mine", "EGRESS_TOKEN_SET=v"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "args: create --env EGRESS_TOKEN_SET img\nA=mine T= S=v\n"
	if string(out) != want {
		t.Errorf("out = %q, want %q", out, want)
	}
}

func TestToolRunErrors(t *testing.T) {
	tool := &Tool{Path: script(t, "printf '\\033[2Kfetching\\r\\nError: exists: \"container with id bot-bottle-x already exists\"\\n' >&2; exit 1")}
	_, err := tool.Output(t.Context(), "create", "--name", "bot-bottle-x", "--env", "K=V", "img")
	var te *ToolError
	if !errors.As(err, &te) {
		t.Fatalf("error = %v, want a *ToolError", err)
	}
	want := `container create bot-bottle-x: exists: "container with id bot-bottle-x already exists"`
	if err.Error() != want || te.Code != 1 {
		t.Errorf("error = %q (%d), want %q", err, te.Code, want)
	}
	if strings.Contains(err.Error(), "K=V") {
		t.Error("an option value is in the error")
	}
	if got := said("Error: log says \x1b]0;pwned\x07\x1b[31mred\x07\x08x\n"); got != "log says red??x" {
		t.Errorf("said = %q: a terminal's control characters got through", got)
	}

	missing := &Tool{Path: filepath.Join(t.TempDir(), "nope")}
	if _, err := missing.Output(t.Context(), "list"); !errors.Is(err, ErrNoTool) {
		t.Errorf("missing CLI: %v", err)
	}

	slow := &Tool{Path: script(t, "trap 'exit 130' INT; while :; do sleep 0.05; done")}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = slow.Output(ctx, "build")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("cancelled run: %v", err)
	}
	if time.Since(start) > 4*time.Second {
		t.Errorf("a cancelled run took %v: the CLI was not interrupted", time.Since(start))
	}
}
