package workspace

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigCredentials(t *testing.T) {
	for _, c := range []struct {
		config string
		want   string // "" for none
	}{
		{"[remote \"origin\"]\n\turl = https://github.com/o/r.git\n", ""},
		{"[remote \"origin\"]\n\turl = git@github.com:o/r.git\n", ""},
		{"[remote \"origin\"]\n\turl = ssh://git@github.com/o/r\n", ""},
		{"[remote \"origin\"]\n\turl = https://github.com/o/r@v1\n", ""},
		{"[credential \"https://github.com\"]\n\tusername = me\n\thelper = store\n", ""},
		{"[core]\n\tfsmonitor = false\n# a token: https://u:p@x.invalid/ in a comment\n", ""},
		{"[remote \"origin\"]\n\turl = https://ghp_tok@github.com/o/r.git\n", "remote.<remote>.url"},
		{"[remote \"origin\"]\n\tpushurl = \"HTTPS://x-access-token:tok@github.com/o/r\"\n", "remote.<remote>.pushurl"},
		{"[remote \"origin\"]\n\turl = ssh://git:pw@host/r\n", "remote.<remote>.url"},
		{"[url \"https://u:p@github.com/\"]\n\tinsteadOf = https://github.com/\n", "url.<url>.insteadof"},
		{"[http \"https://github.com/\"]\n\textraheader = AUTHORIZATION: basic eA==\n", "http.<http>.extraheader"},
		{"[http]\n\textraHeader = Authorization: Bearer x\n", "http.extraheader"},
		{"[http]\n\tproxy = http://user:pw@proxy:3128\n", "http.proxy"},
		{"[github]\n\toauth-token = x\n", "github.oauth-token"},
		{"[sendemail]\n\tsmtpPass = x\n", "sendemail.smtppass"},
		{"[submodule \"lib\"]\n\turl = https://tok@gitlab.com/o/lib\n", "submodule.<submodule>.url"},
		{"[credential]\n\thelper = \"!f() { echo username=x; echo password=tok; }; f\"\n", "credential.helper"},
		{"[credential \"https://github.com\"]\n\thelper = \"!echo password=$(cat /x)\"\n", "credential.<credential>.helper"},
		{"[alias]\n\tpr = \"!gh pr --token ghp_abcdef\"\n", "alias.pr"},
		{"[credential]\n\thelper = osxkeychain\n\thelper = cache --timeout=3600\n", ""},
		// What the parser does not take is looked at as lines.
		{"[remote \"origin\"]\n\turl = https://tok@github.com/o/r \\q\n", "line 2"},
	} {
		got := strings.Join(ConfigCredentials([]byte(c.config)), ",")
		if got != c.want {
			t.Errorf("%q: %q, want %q", c.config, got, c.want)
		}
		for _, secret := range []string{"tok@", "tok:", ":pw", "eA==", "Bearer"} {
			if strings.Contains(got, secret) {
				t.Errorf("%q: the name shows a secret: %q", c.config, got)
			}
		}
	}
}

// A repository whose configuration, or a submodule's, holds a credential
// is not planned for a mount; a clean one is.
func TestPlanGitCredentials(t *testing.T) {
	ws := t.TempDir()
	if out, err := exec.Command("git", "init", "-q", ws).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	if _, err := PlanGit(ws); err != nil {
		t.Fatalf("a clean repository: %v", err)
	}
	mod := filepath.Join(ws, ".git", "modules", "lib")
	os.MkdirAll(mod, 0o755)
	os.WriteFile(filepath.Join(mod, "config"), []byte("[remote \"origin\"]\n\turl = https://tok@github.com/o/lib\n"), 0o644)
	_, err := PlanGit(ws)
	if err == nil || !strings.Contains(err.Error(), "remote.<remote>.url in .git/modules/lib/config") || strings.Contains(err.Error(), "tok@") {
		t.Errorf("a submodule's credential: %v", err)
	}
	os.RemoveAll(mod)
	exec.Command("git", "-C", ws, "config", "http.extraheader", "AUTHORIZATION: basic c2VjcmV0").Run()
	if _, err := PlanGit(ws); err == nil || !strings.Contains(err.Error(), "http.extraheader") || strings.Contains(err.Error(), "c2VjcmV0") {
		t.Errorf("an Authorization header: %v", err)
	}
}
