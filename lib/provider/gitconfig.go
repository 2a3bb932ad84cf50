package provider

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/bb-bottles/bb/lib/routes"
)

// GitConfig is the agent's ~/.gitconfig: who it commits as (when a name or
// an email is given), and the SSH remotes of GitHub and of every host of a
// git route rewritten to HTTPS, the only way out the sidecar offers: there
// the git gate lets the agent clone, fetch and push the route's
// repositories with a token the sidecar injects. git over HTTPS needs
// nothing more in the agent: the proxy and CA variables of its environment
// send it through the sidecar, and no credential is asked for because the
// sidecar's is already on every request.
func GitConfig(name, email string, rs []routes.Route) []byte {
	var b strings.Builder
	b.WriteString("# Written by bb-launch.\n")
	if name != "" || email != "" {
		fmt.Fprintf(&b, "[user]\n\tname = %s\n\temail = %s\n", gitQuote(name), gitQuote(email))
	}
	hosts := []string{"github.com"}
	seen := map[string]bool{"github.com": true}
	for _, r := range rs {
		if r.Git == nil {
			continue
		}
		h := r.Host
		if len(r.Ports) > 0 && !r.MatchPort(443) {
			h += ":" + strconv.Itoa(r.Ports[0])
		}
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	for _, h := range hosts {
		host, _, _ := strings.Cut(h, ":")
		fmt.Fprintf(&b, "[url \"https://%s/\"]\n\tinsteadOf = git@%s:\n\tinsteadOf = ssh://git@%s/\n", h, host, host)
	}
	// The workspace belongs to the person's uid, not the agent's: git
	// would refuse it as of "dubious ownership". Everything in the bottle
	// is the agent's to work in; the person's .git is not in it.
	b.WriteString("[safe]\n\tdirectory = *\n")
	return []byte(b.String())
}

// gitQuote quotes a git config value: inside double quotes only " and \
// are special, and a line break cannot be written at all.
func gitQuote(s string) string {
	s = strings.NewReplacer("\\", "\\\\", "\"", "\\\"", "\n", " ", "\r", " ", "\x00", "").Replace(s)
	return "\"" + s + "\""
}
