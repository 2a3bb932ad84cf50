package docker

import (
	"strings"
	"testing"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/state"
)

// A person's .git whose configuration holds a credential (a token in a
// remote's URL, an Authorization header) is not mounted: the agent would
// read it from the read-only copy, or from the seed of its own.
func TestLaunchGitCredentialsRefused(t *testing.T) {
	c := needBase(t)
	const secret = "ghp_r14AgentMustNotSeeThis0123456789ab"
	for name, args := range map[string][]string{
		"url":         {"remote", "add", "origin", "https://x-access-token:" + secret + "@github.com/o/r.git"},
		"extraheader": {"config", "http.https://github.com/.extraheader", "AUTHORIZATION: basic " + secret},
	} {
		t.Run(name, func(t *testing.T) {
			ws := personCheckout(t)
			personGit(t, ws, args...)
			slug := newSlug("gitcred")
			p, raw := shellPlan(t, slug, func(m *manifest.Manifest) { m.Bottle.Workspace = ws })
			st := &state.Store{Dir: t.TempDir()}
			cleanupBottle(t, c, slug)
			_, err := Launch(t.Context(), c, launchOptions(t, p, raw, st))
			if err == nil {
				_, out, _ := execIn(t, c, slug, "sh", "-c", "cat /bb/git/host/config /workspace/.git/config 2>/dev/null")
				t.Fatalf("launched on a .git with a credential; the agent reads it: %v", strings.Contains(out, secret))
			}
			if exit.CodeOf(err) != exit.CodeUsage || !strings.Contains(err.Error(), "credential") {
				t.Errorf("the refusal: %v", err)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(strings.Join(exit.Hints(err), " "), secret) {
				t.Errorf("the refusal shows the secret: %v", err)
			}
		})
	}
}
