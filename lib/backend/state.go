package backend

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bb-bottles/bb/lib/detect"
	"github.com/bb-bottles/bb/lib/egress"
	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/plan"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// readTokens reads every token the plan names from the host, before
// anything is created: a bottle never starts with a credential silently
// missing, or one its sidecar could not guard. Every bad token is said at
// once, not the first of them.
func (l *Launching) readTokens(context.Context) error {
	env, err := TokenEnv(l.Plan, l.Env)
	l.Tokens = env
	return err
}

// TokenEnv reads the values of p's tokens from the host (env, and the files
// the plan names) and returns the sidecar's environment:
// EGRESS_TOKEN_<NAME>=value for every token and the canary. Every bad
// token is said at once, not the first of them. A backend that starts a
// stopped sidecar by handing it its tokens again (smolvm) reads them with
// it.
func TokenEnv(p *plan.Plan, getenv func(string) string) ([]string, error) {
	env := []string{plan.TokenEnvPrefix + plan.CanaryToken + "=" + p.Canary}
	var bad []error
	var hints []string
	seen := map[string]string{}
	for _, t := range p.Egress.Tokens {
		v, err := tokenValue(t, getenv)
		if err == nil {
			err = checkToken(t.Name, v, seen)
		}
		if err != nil {
			bad = append(bad, err)
			hints = append(hints, exit.Hints(err)...)
			continue
		}
		seen[v] = t.Name
		env = append(env, plan.TokenEnvPrefix+t.Name+"="+v)
	}
	switch len(bad) {
	case 0:
		return env, nil
	case 1:
		return nil, bad[0]
	}
	msgs := make([]string, len(bad))
	for i, e := range bad {
		msgs[i] = e.Error()
	}
	return nil, exit.Usage(fmt.Errorf("%d tokens cannot be used:\n  %s", len(bad), strings.Join(msgs, "\n  ")), hints...)
}

// checkToken refuses a value the sidecar could not guard: one shorter than
// the detector can tell from ordinary text (it would be injected, and
// could leave in any request unseen), or one equal to another token's.
func checkToken(name, v string, seen map[string]string) error {
	if len(v) < detect.MinLen {
		return exit.Usage(fmt.Errorf("token %s is %d characters long: the sidecar cannot tell fewer than %d from ordinary text, so it could not keep it from leaving",
			name, len(v), detect.MinLen), "check that the variable or file holds the whole token")
	}
	if other, ok := seen[v]; ok {
		return exit.Usagef("token %s has the same value as token %s", name, other)
	}
	return nil
}

func tokenValue(t plan.Token, env func(string) string) (string, error) {
	switch {
	case t.Env != "":
		v := env(t.Env)
		if v == "" {
			return "", exit.Usage(fmt.Errorf("token %s: the host variable %s is not set", t.Name, t.Env),
				fmt.Sprintf("export %s before launching, or give the bottle's tokens.%s a file: PATH", t.Env, t.Name))
		}
		return v, nil
	case t.File != "":
		path := t.File
		if rest, ok := strings.CutPrefix(path, "~/"); ok {
			home := env("HOME")
			if home == "" {
				return "", exit.Usagef("token %s: cannot expand ~ in %s: HOME is not set", t.Name, t.File)
			}
			path = filepath.Join(home, rest)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return "", exit.Usage(fmt.Errorf("token %s: reading %s: %w", t.Name, path, unwrapPathErr(err)),
				fmt.Sprintf("put the token in %s, or give the bottle's tokens.%s an env: VARIABLE", path, t.Name))
		}
		v := strings.TrimSpace(string(b))
		if v == "" || strings.ContainsAny(v, "\r\n\x00") {
			return "", exit.Usagef("token %s: %s must hold one line, the token", t.Name, path)
		}
		return v, nil
	}
	return "", exit.Usagef("token %s: the plan says neither env nor file", t.Name)
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// writeState takes the bottle's lock and writes its folder: a new bottle's
// plan, metadata, routes and CA; for a resumed one, only what is missing.
func (l *Launching) writeState(ctx context.Context) error {
	st, slug := l.Store, l.Plan.Slug
	unlock, err := st.Lock(ctx, slug)
	if err != nil {
		return err
	}
	l.unlock = unlock
	// Whether the bottle exists is decided under the lock: a launch that
	// lost a race for the slug must not take the winner's folder for one
	// it made, and remove it as it fails.
	exists := st.Exists(slug)
	switch {
	case l.Resume && !exists:
		return exit.Usage(&state.NotFoundError{Slug: slug, Dir: st.Dir}, "run 'bb-launch ls' to list the bottles")
	case !l.Resume && exists:
		return exit.Usage(fmt.Errorf("bottle %s already exists", slug),
			fmt.Sprintf("resume it with 'bb-launch resume %s', or remove it with 'bb-launch stop --rm %s'", slug, slug))
	}
	if !l.Resume {
		// From here the folder is this launch's: no bottle had metadata.
		l.madeState = true
		if err := st.WritePlan(slug, l.PlanJSON); err != nil {
			return err
		}
		md := state.Metadata{Slug: slug, Agent: l.Plan.Agent.Name, Template: l.Plan.Agent.Template, Label: l.Plan.Label,
			Color: l.Plan.Color, Backend: l.Plan.Backend, Created: time.Now().UTC().Truncate(time.Second), Images: []state.Image{}}
		if err := st.WriteMetadata(slug, md); err != nil {
			return err
		}
	}
	dir, err := st.MakeEgressDir(slug)
	if err != nil {
		return err
	}
	// A resumed bottle keeps its routes: bb-egress apply may have changed
	// them since the plan was made.
	routesPath := filepath.Join(dir, state.RoutesFile)
	if _, err := os.Stat(routesPath); !l.Resume || errors.Is(err, fs.ErrNotExist) {
		if err := WriteRoutes(routesPath, l.Plan.Egress.Routes); err != nil {
			return err
		}
	}
	// The CA is made here, by the sidecar's own code, so that the agent can
	// be given its certificate before the sidecar runs; its key stays in
	// the egress folder, which only the sidecar mounts.
	if _, err := egress.LoadOrCreateCA(dir, 1); err != nil {
		return err
	}
	if l.UpstreamCA != "" {
		b, err := os.ReadFile(l.UpstreamCA)
		if err != nil {
			return exit.Usage(fmt.Errorf("reading --upstream-ca: %w", err))
		}
		if err := state.WriteFileAtomic(filepath.Join(dir, UpstreamCAFile), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// UpstreamCAFile is where --upstream-ca is copied in the egress folder.
const UpstreamCAFile = "upstream-ca.pem"

// WriteRoutes writes the sidecar's routes file, checked by the sidecar's
// own parser first.
func WriteRoutes(path string, rs []routes.Route) error {
	if rs == nil {
		rs = []routes.Route{}
	}
	data, err := yaml.Marshal(rs)
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if _, err := routes.Parse(data, path); err != nil {
		return exit.Usage(fmt.Errorf("the plan's routes: %w", err))
	}
	return state.WriteFileAtomic(path, data, 0o600)
}
