package workspace

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	home := t.TempDir()
	stateDir := filepath.Join(home, ".local", "state", "bot-bottle")
	project := filepath.Join(home, "src", "project")
	sock := filepath.Join(t.TempDir(), "ssh-agent", "agent.1")
	for _, d := range []string{project, stateDir, filepath.Join(home, ".ssh", "keys"), filepath.Dir(sock),
		filepath.Join(home, ".config", "gh"), filepath.Join(home, "Library", "Keychains")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(t.TempDir(), "home-link")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	sshLink := filepath.Join(project, "innocent")
	if err := os.Symlink(filepath.Join(home, ".ssh"), sshLink); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string {
		switch k {
		case "HOME":
			return home
		case "SSH_AUTH_SOCK":
			return sock
		case "DOCKER_HOST":
			return "unix://" + filepath.Join(project, "run", "docker.sock")
		}
		return ""
	}
	rules := Rules(env, stateDir)
	for _, tc := range []struct {
		ws, want string // want: "" for accepted, else a part of the message
	}{
		{filepath.Join(home, "src"), "the Docker socket"}, // DOCKER_HOST's socket is in project/run
		{filepath.Join(project, "sub"), ""},
		{"/", "host's root"},
		{home, "home folder"},
		{home + "/", "home folder"},
		{link, "home folder"},
		{filepath.Dir(home), "home folder"},
		{filepath.Join(home, ".local"), "bb's state folder"},
		{filepath.Join(stateDir, "x-1"), "inside bb's state folder"},
		{filepath.Join(home, ".ssh"), "~/.ssh"},
		{filepath.Join(home, ".ssh", "keys"), "inside ~/.ssh"},
		{sshLink, "it is ~/.ssh"},
		{filepath.Join(home, ".config", "gh"), "inside ~/.config"},
		{filepath.Join(home, ".aws"), "~/.aws"},
		{filepath.Join(home, ".claude"), "~/.claude"},
		{filepath.Join(home, "Library", "Keychains"), "inside ~/Library"},
		{filepath.Dir(sock), "SSH agent's socket"},
		{"/etc", "host's configuration"},
		{"/etc/ssh", "inside the host's configuration"},
		{"/proc/self", "kernel's files"},
		{"/run/user", "inside the host's sockets"},
		{"/var", "engine's own data"},
		{"/tmp", "temporary folder"},
		{"/usr", "host's programs"},
		{"relative", "not an absolute path"},
	} {
		_, err := Check(tc.ws, rules)
		var r *Refusal
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.ws, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.As(err, &r)):
			t.Errorf("%s: got %v, want a refusal with %q", tc.ws, err, tc.want)
		}
	}
	// A folder made in /tmp is a workspace like any other.
	if _, err := CheckDir(t.TempDir(), Rules(func(string) string { return "" }, "")); err != nil {
		t.Errorf("a folder in the temporary folder: %v", err)
	}
	if _, err := CheckDir(filepath.Join(project, "missing"), rules); err == nil {
		t.Error("a missing folder was accepted")
	}
}

func TestSame(t *testing.T) {
	parent := t.TempDir()
	ws := filepath.Join(parent, "ws")
	other := filepath.Join(parent, "other")
	for _, d := range []string{ws, other} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ws = Resolve(ws)
	id, err := IDOf(ws)
	if err != nil {
		t.Fatal(err)
	}
	if err := Same(ws, id); err != nil {
		t.Fatalf("the same folder: %v", err)
	}
	// Another folder put in its place (what an agent with the parent as
	// its workspace could do between two launches).
	if err := os.Rename(ws, ws+".old"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(ws, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := Same(ws, id); err == nil || !strings.Contains(err.Error(), "another was put in its place") {
		t.Errorf("a replaced folder: %v", err)
	}
	// A link in its place, to a folder the agent wants mounted.
	os.Remove(ws)
	if err := os.Symlink(other, ws); err != nil {
		t.Fatal(err)
	}
	if err := Same(ws, id); err == nil || !strings.Contains(err.Error(), "replaced by a link") {
		t.Errorf("a link in its place: %v", err)
	}
	os.Remove(ws)
	if err := Same(ws, id); err == nil {
		t.Error("a missing folder was the same")
	}
}

func TestNestedRepos(t *testing.T) {
	ws := t.TempDir()
	for _, d := range []string{".git/objects", "a/b/.git", "vendor/lib/.git/modules/x", "c"} {
		if err := os.MkdirAll(filepath.Join(ws, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(ws, "c", ".git"), []byte("gitdir: /elsewhere\n"), 0o644)
	os.Symlink("/etc", filepath.Join(ws, "d"))
	repos, complete := NestedRepos(ws, 1000)
	got := strings.Join(repos, ",")
	for _, want := range []string{"a/b", "vendor/lib", "c"} {
		if !strings.Contains(","+got+",", ","+want+",") {
			t.Errorf("nested repositories %q: %s missing", got, want)
		}
	}
	if !complete || len(repos) != 3 {
		t.Errorf("nested repositories %q, complete %v", got, complete)
	}
	if _, complete := NestedRepos(ws, 3); complete {
		t.Error("a walk past its budget says it saw everything")
	}
}
