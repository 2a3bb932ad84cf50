package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/yamlx"
)

var (
	// Names become part of slugs, container names and field paths.
	nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$`)
)

// ReservedToken is the token name of the canary, which bb mints itself.
const ReservedToken = "CANARY"

// validate checks what decoding cannot: versions, names, references between
// agents, bottles, tokens and templates. It returns the first error in file
// order, so the same manifest always gives the same message.
func (ix *ManifestIndex) validate(env func(string) string) error {
	var errs []*yamlx.Error
	add := func(e *yamlx.Error) { errs = append(errs, e) }
	pos := ix.pos

	if !pos.Has("version") {
		ix.Version = Version
	} else if ix.Version != Version {
		add(pos.Errorf("version", "unsupported version %d", ix.Version).
			WithHints(fmt.Sprintf("this bb reads manifests of version %d", Version)))
	}
	if ix.Bottles == nil {
		ix.Bottles = map[string]*Bottle{}
	}
	if ix.Agents == nil {
		ix.Agents = map[string]*Agent{}
	}
	ix.validateGitUser(add, ix.GitUser, "git_user")

	for _, name := range sortedKeys(ix.Bottles) {
		path := yamlx.Join("bottles", name)
		if !nameRE.MatchString(name) {
			add(pos.KeyErrorf(path, "%q is not a valid bottle name", name).WithHints(nameHint))
		}
		b := ix.Bottles[name]
		if b == nil {
			b = &Bottle{}
			ix.Bottles[name] = b
		}
		b.Name = name
		ix.validateBottle(add, b, path)
	}

	pluginDir := provider.ConfigDir(env)
	for _, name := range sortedKeys(ix.Agents) {
		path := yamlx.Join("agents", name)
		if !nameRE.MatchString(name) {
			add(pos.KeyErrorf(path, "%q is not a valid agent name", name).WithHints(nameHint))
		}
		a := ix.Agents[name]
		if a == nil {
			a = &Agent{}
			ix.Agents[name] = a
		}
		a.Name = name
		ix.validateAgent(add, a, path, pluginDir)
	}

	if len(errs) == 0 {
		return nil
	}
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i], errs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	return errs[0]
}

const nameHint = "a name is letters, digits, - and _, starting with a letter or digit (at most 63)"

func (ix *ManifestIndex) validateGitUser(add func(*yamlx.Error), g *GitUser, path string) {
	if g == nil {
		return
	}
	if strings.ContainsAny(g.Name, "\n\r<>") {
		add(ix.pos.Errorf(yamlx.Join(path, "name"), "must not contain a line break, < or >"))
	}
	if g.Email != "" && (!strings.Contains(g.Email, "@") || strings.ContainsAny(g.Email, " \t\n\r<>")) {
		add(ix.pos.Errorf(yamlx.Join(path, "email"), "%q is not an email address", g.Email))
	}
}

func (ix *ManifestIndex) validateBottle(add func(*yamlx.Error), b *Bottle, path string) {
	pos := ix.pos
	for _, tn := range sortedKeys(b.Tokens) {
		tp := yamlx.Join(path, "tokens."+tn)
		t := b.Tokens[tn]
		switch {
		case tn == ReservedToken:
			add(pos.KeyErrorf(tp, "token name %s is reserved for the canary bb plants itself", tn).
				WithHints("give the token another name"))
		case !routes.ValidTokenName(tn):
			add(pos.KeyErrorf(tp, "%q is not a token NAME (upper case letters, digits and _, starting with a letter)", tn))
		case (t.Env == "") == (t.File == ""):
			add(pos.Errorf(tp, "must set exactly one of env and file").
				WithHints(fmt.Sprintf("%s: {env: VARIABLE} takes the value from the host's environment; "+
					"%s: {file: PATH} from a file", tn, tn)))
		case t.Env != "" && routes.CheckEnvName(t.Env) != nil:
			add(pos.Errorf(yamlx.Join(tp, "env"), "%v", routes.CheckEnvName(t.Env)))
		}
	}
	rpath := yamlx.Join(path, "egress.routes")
	for i := range b.Egress.Routes {
		r := &b.Egress.Routes[i]
		if err := r.Validate(); err != nil {
			fe := err.(*routes.FieldError)
			add(pos.Errorf(yamlx.Index(rpath, i)+"."+fe.Field, "%s", fe.Msg))
			continue
		}
		if r.Inject == nil {
			continue
		}
		if _, ok := b.Tokens[r.Inject.Token]; !ok {
			hint := fmt.Sprintf("declare it in the bottle: tokens: {%s: {env: VARIABLE}}", r.Inject.Token)
			if len(b.Tokens) > 0 {
				hint += "; declared: " + strings.Join(sortedKeys(b.Tokens), ", ")
			}
			add(pos.Errorf(yamlx.Index(rpath, i)+".inject.token", "token %q is not declared in %s.tokens",
				r.Inject.Token, path).WithHints(hint))
		}
	}
	if err := routes.CheckGitHosts(b.Egress.Routes); err != nil {
		fe := err.(*routes.FieldError)
		add(pos.Errorf(rpath+fe.Field, "%s", fe.Msg))
	}
	ix.validateGitUser(add, b.GitUser, yamlx.Join(path, "git_user"))
}

func (ix *ManifestIndex) validateAgent(add func(*yamlx.Error), a *Agent, path, pluginDir string) {
	pos := ix.pos
	var p *provider.Provider
	tp := yamlx.Join(path, "template")
	if a.Template == "" {
		add(pos.Errorf(tp, "is required").WithHints(templateHint(pluginDir)))
	} else if found, err := provider.Lookup(a.Template, pluginDir); errors.Is(err, provider.ErrUnknown) {
		add(pos.Errorf(tp, "template %q is not defined", a.Template).WithHints(templateHint(pluginDir)))
	} else if err != nil {
		add(pos.Errorf(tp, "%v", err))
	} else {
		p = found
	}

	bp := yamlx.Join(path, "bottle")
	if a.Bottle == "" {
		add(pos.Errorf(bp, "is required").WithHints(ix.bottlesHint()))
	} else if _, ok := ix.Bottles[a.Bottle]; !ok {
		add(pos.Errorf(bp, "bottle %q is not defined", a.Bottle).WithHints(ix.bottlesHint()))
	}

	if a.Prompt != "" && a.PromptFile != "" {
		add(pos.Errorf(yamlx.Join(path, "prompt_file"), "prompt and prompt_file are both set").
			WithHints("keep one of them"))
	}
	ix.validateGitUser(add, a.GitUser, yamlx.Join(path, "git_user"))

	if p == nil {
		return
	}
	for _, opt := range sortedKeys(a.Options) {
		op := yamlx.Join(path, "options."+opt)
		switch {
		case !p.Builtin && provider.IsReserved(opt):
			add(pos.KeyErrorf(op, "option %q is reserved to the built-in templates; %q is a plugin", opt, p.Name).
				WithHints("reserved options reach into the host or widen egress, so only built-in templates may take them"))
		case !contains(p.Options, opt):
			e := pos.KeyErrorf(op, "template %q does not accept option %q", p.Name, opt)
			if len(p.Options) == 0 {
				e.WithHints(fmt.Sprintf("template %q accepts no options", p.Name))
			} else {
				e.WithHints(fmt.Sprintf("template %q accepts: %s", p.Name, strings.Join(p.Options, ", ")))
			}
			add(e)
		}
	}
}

func templateHint(pluginDir string) string {
	h := "built-in templates: " + strings.Join(provider.Builtins(), ", ")
	if pluginDir != "" {
		h += "; a plugin template NAME is " + pluginDir + "/NAME/provider.yaml"
	}
	return h
}

func (ix *ManifestIndex) bottlesHint() string {
	if len(ix.Bottles) == 0 {
		return "no bottles are defined: add one under bottles:"
	}
	return "defined bottles: " + strings.Join(sortedKeys(ix.Bottles), ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
