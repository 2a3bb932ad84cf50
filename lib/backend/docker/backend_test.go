package docker

import "testing"

func TestExitCode(t *testing.T) {
	for status, want := range map[string]int{"Exited (0) 2 minutes ago": 0, "Exited (137) About an hour ago": 137,
		"Up 3 seconds": -1, "Created": -1, "Exited (x)": -1, "Exited (": -1} {
		if got := exitCode(status); got != want {
			t.Errorf("exitCode(%q) = %d, want %d", status, got, want)
		}
	}
}
