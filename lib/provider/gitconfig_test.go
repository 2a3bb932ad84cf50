package provider

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/bb-bottles/bb/lib/routes"
)

func TestGitConfig(t *testing.T) {
	rs := []routes.Route{
		{Host: "api.github.com"},
		{Host: "github.com", Git: &routes.Git{Repos: []string{"a/b"}}},
		{Host: "gitlab.example", Git: &routes.Git{Repos: []string{"g/s/p"}}},
		{Host: "git.internal", Ports: []int{8443}, Git: &routes.Git{Repos: []string{"x/y"}}},
	}
	want := `# Written by bb-launch.
[user]
	name = "Bot"
	email = ""
[url "https://github.com/"]
	insteadOf = git@github.com:
	insteadOf = ssh://git@github.com/
[url "https://gitlab.example/"]
	insteadOf = git@gitlab.example:
	insteadOf = ssh://git@gitlab.example/
[url "https://git.internal:8443/"]
	insteadOf = git@git.internal:
	insteadOf = ssh://git@git.internal/
[safe]
	directory = *
`
	if diff := cmp.Diff(want, string(GitConfig("Bot", "", rs))); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if got := string(GitConfig("", "", nil)); got != "# Written by bb-launch.\n[url \"https://github.com/\"]\n\tinsteadOf = git@github.com:\n\tinsteadOf = ssh://git@github.com/\n[safe]\n\tdirectory = *\n" {
		t.Errorf("no user, no git routes:\n%s", got)
	}
}
