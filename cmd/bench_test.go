package cmd_test

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// BenchmarkManifestPlanPipeline is the wall time of the dry run a person
// types: bb-manifest demo | bb-plan, two processes and a pipe, on the
// example manifest.
func BenchmarkManifestPlanPipeline(b *testing.B) {
	example, _ := filepath.Abs(filepath.Join("..", "examples", "bb.yaml"))
	script := `"$1/bb-manifest" --file "$2" demo | "$1/bb-plan" >/dev/null`
	for i := 0; i < b.N; i++ {
		out, err := exec.Command("sh", "-c", script, "sh", binDir, example).CombinedOutput()
		if err != nil {
			b.Fatalf("pipeline: %v\n%s", err, out)
		}
	}
}

// BenchmarkShellBaseline is the same sh -c with two trivial processes and a
// pipe: the floor the pipeline's wall time is compared against.
func BenchmarkShellBaseline(b *testing.B) {
	for i := 0; i < b.N; i++ {
		if out, err := exec.Command("sh", "-c", "true | cat >/dev/null").CombinedOutput(); err != nil {
			b.Fatalf("baseline: %v\n%s", err, out)
		}
	}
}
