package backend

import (
	"slices"
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/plan"
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

func TestHomeFiles(t *testing.T) {
	files := []plan.File{{Path: "/home/agent/.claude/skills/README.md", Mode: "0644", Content: "x"},
		{Path: "/home/agent/.claude/bb-statusline.sh", Mode: "0755", Content: "#!/bin/sh\n"}}
	got, err := HomeFiles(files, "the prompt", "/home/agent")
	if err != nil {
		t.Fatal(err)
	}
	var paths, dirs []string
	for _, f := range got {
		paths = append(paths, f.Path)
		if f.Dir {
			dirs = append(dirs, f.Path)
		}
	}
	want := []string{"/home/agent/.claude", "/home/agent/.claude/skills", "/home/agent/.claude/skills/README.md",
		"/home/agent/.claude/bb-statusline.sh", "/home/agent/.bb", "/home/agent/.bb/prompt.md"}
	if !slices.Equal(paths, want) {
		t.Errorf("paths = %q, want %q", paths, want)
	}
	if want := []string{"/home/agent/.claude", "/home/agent/.claude/skills", "/home/agent/.bb"}; !slices.Equal(dirs, want) {
		t.Errorf("folders = %q, want %q", dirs, want)
	}
	for _, bad := range []string{"/etc/passwd", "/home/agent/../root/x", "relative", "/home/agentx/f"} {
		if _, err := HomeFiles([]plan.File{{Path: bad, Mode: "0644"}}, "", "/home/agent"); err == nil {
			t.Errorf("HomeFiles took %s", bad)
		}
	}
}

func TestLookupUser(t *testing.T) {
	passwd := []byte("root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/bash\nbroken:x:a:b::/x:/bin/sh\n")
	tests := []struct {
		user       string
		uid, gid   int
		home, fail string
	}{
		{user: "agent", uid: 1000, gid: 1000, home: "/home/agent"},
		{user: "1000:2000", uid: 1000, gid: 2000, home: "/home/agent"},
		{user: "root", fail: "is root"},
		{user: "0", fail: "is root"},
		{user: "nobody", fail: "not in the image's /etc/passwd"},
		{user: "broken", fail: "not in the image's /etc/passwd"},
		{user: "agent:staff", fail: "want a numeric group"},
	}
	for _, tt := range tests {
		uid, gid, home, err := LookupUser(passwd, tt.user)
		if tt.fail != "" {
			if err == nil || !strings.Contains(err.Error(), tt.fail) {
				t.Errorf("LookupUser(%q) = %v, want %q", tt.user, err, tt.fail)
			}
			continue
		}
		if err != nil || uid != tt.uid || gid != tt.gid || home != tt.home {
			t.Errorf("LookupUser(%q) = %d, %d, %q, %v", tt.user, uid, gid, home, err)
		}
	}
}

func TestAppendCA(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nX\n-----END CERTIFICATE-----\n")
	once := AppendCA([]byte("other"), ca)
	if string(once) != "other\n"+string(ca) {
		t.Errorf("AppendCA = %q", once)
	}
	if twice := AppendCA(once, ca); string(twice) != string(once) {
		t.Errorf("appended twice: %q", twice)
	}
}
