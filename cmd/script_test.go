// The end-to-end tests: every command built once, as a real binary, and
// driven by the testscript files in testdata/script, alone and in pipelines.
package cmd_test

import (
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

var binDir string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "bb-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	build := exec.Command("go", "build", "-o", dir+string(os.PathSeparator), "./...")
	build.Dir = "."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building the commands:", err)
		return 1
	}
	// What the macos-container scripts need: the fake container CLI (in a
	// folder of its own, on their PATH only) and a static bb-egress for
	// the sidecar's image and the agent's init.
	fake := exec.Command("go", "build", "-o", filepath.Join(dir, "fakecontainer", "container"), "../lib/backend/macoscontainer/internal/fakecontainer")
	static := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(dir, "bb-egress-linux-"+runtime.GOARCH), "./bb-egress")
	static.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux")
	for _, c := range []*exec.Cmd{fake, static} {
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		if err := c.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building", c.Args, err)
			return 1
		}
	}
	wrapper, err := os.ReadFile(filepath.Join("..", "scripts", "bb"))
	if err == nil {
		if err := os.WriteFile(filepath.Join(dir, "bb"), wrapper, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	binDir = dir
	return m.Run()
}

func TestScripts(t *testing.T) {
	root, _ := filepath.Abs("..")
	testscript.Run(t, testscript.Params{
		Dir: filepath.Join("testdata", "script"),
		Setup: func(env *testscript.Env) error {
			env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
			env.Setenv("BB_STATE_DIR", filepath.Join(env.WorkDir, ".state"))
			env.Setenv("XDG_CONFIG_HOME", filepath.Join(env.WorkDir, ".config"))
			env.Setenv("NO_COLOR", "1")
			env.Setenv("BB_ROOT", root)
			// The example's hash, for the files list of golden manifests.
			if b, err := os.ReadFile(filepath.Join(root, "examples", "bb.yaml")); err == nil {
				env.Setenv("EXAMPLE_SHA256", fmt.Sprintf("%x", sha256.Sum256(b)))
			}
			env.Setenv("GOOS_ARCH", runtime.GOOS+"/"+runtime.GOARCH)
			env.Setenv("FAKECONTAINER", filepath.Join(binDir, "fakecontainer"))
			return nil
		},
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       os.Getenv("BB_UPDATE_GOLDEN") == "1",
	})
}
