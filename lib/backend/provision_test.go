package backend

import (
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/routes"
)

func TestGitConfig(t *testing.T) {
	rs := []routes.Route{{Host: "gitlab.example", Git: &routes.Git{Repos: []string{"g/p"}}}}
	got := string(GitConfig(&manifest.GitUser{Name: "A \"quoted\" \\ name\nnext", Email: "a@example.invalid"}, rs))
	want := "# Written by bb-launch.\n[user]\n\tname = \"A \\\"quoted\\\" \\\\ name next\"\n\temail = \"a@example.invalid\"\n" +
		"[url \"https://github.com/\"]\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n" +
		"[url \"https://gitlab.example/\"]\n\tinsteadOf = git@gitlab.example:\n\tinsteadOf = ssh://git@gitlab.example/\n[safe]\n\tdirectory = *\n"
	if got != want {
		t.Errorf("GitConfig =\n%s\nwant\n%s", got, want)
	}
	if got := string(GitConfig(nil, nil)); strings.Contains(got, "[user]") {
		t.Errorf("no git user, yet:\n%s", got)
	}
}
