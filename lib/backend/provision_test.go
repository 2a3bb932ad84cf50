package backend

import (
	"testing"

	"github.com/bb-bottles/bb/lib/manifest"
)

func TestGitConfig(t *testing.T) {
	got := string(GitConfig(&manifest.GitUser{Name: "A \"quoted\" \\ name\nnext", Email: "a@example.invalid"}))
	want := "# Written by bb-launch.\n[user]\n\tname = \"A \\\"quoted\\\" \\\\ name next\"\n\temail = \"a@example.invalid\"\n" +
		"[url \"https://github.com/\"]\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n[safe]\n\tdirectory = *\n"
	if got != want {
		t.Errorf("GitConfig =\n%s\nwant\n%s", got, want)
	}
}
