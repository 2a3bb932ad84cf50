package plan

import (
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/bb-bottles/bb/lib/exit"
	"github.com/bb-bottles/bb/lib/manifest"
	"github.com/bb-bottles/bb/lib/names"
	"github.com/bb-bottles/bb/lib/provider"
	"github.com/bb-bottles/bb/lib/routes"
	"github.com/bb-bottles/bb/lib/state"
)

// Where the agent finds the sidecar, and where things are inside the
// sidecar and the agent.
const (
	EgressHost = "bb.egress"
	EgressPort = 3128
	// EgressDir is where the bottle's egress folder is mounted in the
	// sidecar.
	EgressDir = "/egress"
	// AgentCAFile is where the bottle's CA certificate is in the agent.
	AgentCAFile = "/etc/bb/ca.pem"
	Workdir     = "/workspace"
	// CanaryEnv is the agent's variable holding the canary, and
	// CanaryToken the name the sidecar knows it by (EGRESS_TOKEN_CANARY).
	CanaryEnv   = "BOT_BOTTLE_CANARY"
	CanaryToken = "CANARY"
	// TokenEnvPrefix starts every sidecar variable holding a secret.
	TokenEnvPrefix = "EGRESS_TOKEN_"
)

// CAEnv are the variables that point a client library at the bottle's CA.
// They replace the system bundle rather than add to it (except Node's):
// every connection goes through the sidecar, whose CA is the only one the
// agent ever needs.
var CAEnv = []string{"CURL_CA_BUNDLE", "GIT_SSL_CAINFO", "NODE_EXTRA_CA_CERTS", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"}

// NoProxy is the agent's NO_PROXY: loopback only. Loopback never leaves the
// bottle, so a local dev server stays reachable; every other name and
// address goes to the sidecar, and the sidecar's own name is not excepted.
const NoProxy = "localhost,127.0.0.1,::1"

// Default resource limits. The manifest has no say yet.
var (
	AgentLimits   = Limits{Memory: "4g", CPUs: 2, PidsLimit: 512, Disk: "16g"}
	SidecarLimits = Limits{Memory: "256m", CPUs: 0.5, PidsLimit: 256}
)

// Options are the choices bb-plan's flags make; a zero field means the
// default (docker) or a minted value.
type Options struct {
	Backend string
	Slug    string
	Label   string
	Color   string
	Canary  string
	// PluginDir is where user plugins live (provider.ConfigDir); empty for
	// built-ins only.
	PluginDir string
	// Rand mints the slug and canary; crypto/rand when nil.
	Rand io.Reader
	// Env, when set, gives HOME and the state directory's variables, to
	// refuse a manifest's workspace that would hand the agent either
	// (CheckWorkspace); bb-launch checks again, with more, at launch.
	Env func(string) string
}

// Check checks the options by themselves, naming the flag at fault. Every
// error is bad usage (exit 2).
func (o *Options) Check() error {
	if o.Backend != "" && !contains(names.Backends, o.Backend) {
		return exit.Usagef("bad --backend %q: want %s", o.Backend, orList(names.Backends))
	}
	if o.Slug != "" && !ValidSlug(o.Slug) {
		return exit.Usagef("bad --slug %q: want a DNS label (a-z, 0-9 and inner '-', at most 63 characters)", o.Slug)
	}
	if o.Color != "" {
		if _, ok := NormalizeColor(o.Color); !ok {
			return exit.Usagef("bad --color %q: want %s", o.Color, orList(append(append([]string(nil), Palette...), "#rrggbb")))
		}
	}
	if o.Canary != "" && !ValidCanary(o.Canary) {
		// The value is not repeated: whatever it is, it was meant to be secret.
		return exit.Usage(errors.New("bad --canary: want 43 base64url characters (32 random bytes without padding)"),
			"leave --canary out to mint a new one")
	}
	if strings.IndexFunc(o.Label, unicode.IsControl) >= 0 {
		return exit.Usagef("bad --label %q: want no control characters", o.Label)
	}
	return nil
}

// CheckManifest checks what a plan relies on in m: its kind and version, the
// agent's name and template, the routes and the token sources. Errors name
// the field.
func CheckManifest(m *manifest.Manifest) error {
	if m.Kind != manifest.Kind {
		return fmt.Errorf("kind is %q, want %q", m.Kind, manifest.Kind)
	}
	if m.Version != manifest.Version {
		return fmt.Errorf("version is %d, want %d", m.Version, manifest.Version)
	}
	if m.Agent.Name == "" {
		return errors.New("agent.name is empty")
	}
	if m.Agent.Template == "" {
		return errors.New("agent.template is empty")
	}
	if err := routes.ValidateAll(m.Bottle.Egress.Routes); err != nil {
		return fmt.Errorf("bottle.egress.routes%w", err)
	}
	for _, opt := range []string{OptionTelemetry, OptionForwardLogin} {
		if v, ok := m.Agent.Options[opt]; ok {
			if _, isBool := v.(bool); !isBool {
				return fmt.Errorf("agent.options.%s: want true or false, not %v", opt, v)
			}
		}
	}
	for _, name := range sortedKeys(m.Bottle.Tokens) {
		src := m.Bottle.Tokens[name]
		switch {
		case !routes.ValidTokenName(name):
			return fmt.Errorf("bottle.tokens.%s: %q is not a token NAME (upper case, digits, _)", name, name)
		case name == CanaryToken:
			return fmt.Errorf("bottle.tokens.%s: the name %s is the canary's", name, name)
		case (src.Env == "") == (src.File == ""):
			return fmt.Errorf("bottle.tokens.%s: want exactly one of env and file", name)
		case src.Env != "":
			if err := routes.CheckEnvName(src.Env); err != nil {
				return fmt.Errorf("bottle.tokens.%s.env: %w", name, err)
			}
		}
	}
	return nil
}

// The agent options a plan acts on, both reserved to built-in templates.
const (
	OptionTelemetry    = "telemetry"
	OptionForwardLogin = "forward_login"
)

// option is the boolean agent option opt (CheckManifest checked its type).
func option(m *manifest.Manifest, opt string) bool {
	v, _ := m.Agent.Options[opt].(bool)
	return v
}

// New makes the plan of m. It reads no token and writes nothing; it only
// looks up m's template (a user plugin's provider.yaml and Dockerfile, in
// o.PluginDir).
func New(m *manifest.Manifest, o Options) (*Plan, error) {
	if err := o.Check(); err != nil {
		return nil, err
	}
	if err := CheckManifest(m); err != nil {
		return nil, err
	}
	if ws := m.Bottle.Workspace; ws != "" && o.Env != nil {
		if err := CheckWorkspace(ws, o.Env); err != nil {
			return nil, err
		}
	}
	prov, err := provider.Lookup(m.Agent.Template, o.PluginDir)
	if err != nil {
		return nil, fmt.Errorf("looking up template of agent %s: %w", m.Agent.Name, err)
	}
	if !prov.Builtin {
		for _, opt := range sortedKeys(m.Agent.Options) {
			if provider.IsReserved(opt) {
				return nil, exit.Usage(fmt.Errorf("agent.options.%s: option %q is reserved to the built-in templates; %q is a plugin",
					opt, opt, prov.Name), "reserved options reach into the host or widen egress, so only built-in templates may take them")
			}
		}
	}
	if option(m, OptionForwardLogin) {
		if prov.Login == nil {
			return nil, exit.Usage(fmt.Errorf("agent.options.forward_login: template %s has no login the sidecar can hold", prov.Name),
				"give the agent an API key instead (see the README, Providers and plugins)")
		}
		// The subscription's token replaces the API key: the agent holds
		// only the login's placeholder.
		prov.Routes, prov.Tokens, prov.Placeholders = prov.Login.Routes, prov.Login.Tokens, prov.Login.Placeholders
	}

	p := &Plan{Kind: Kind, Version: Version, Backend: o.Backend, Slug: o.Slug,
		Canary: o.Canary, Label: o.Label, Manifest: *m}
	if p.Manifest.Files == nil {
		p.Manifest.Files = []manifest.SourceFile{} // a list is a list, also when a manifest from elsewhere has none
	}
	if p.Backend == "" {
		p.Backend = names.Docker
	}
	if p.Slug == "" {
		if p.Slug, err = MintSlug(m.Agent.Name, o.Rand); err != nil {
			return nil, err
		}
	}
	if p.Canary == "" {
		if p.Canary, err = MintCanary(o.Rand); err != nil {
			return nil, err
		}
	}
	if p.Label == "" {
		p.Label = m.Agent.Name
	}
	p.Color, _ = NormalizeColor(o.Color)
	if p.Color == "" {
		p.Color = ColorFor(p.Slug)
	}

	if p.Egress, err = planEgress(m, prov, p.Slug); err != nil {
		return nil, err
	}
	if p.Agent, err = planAgent(m, prov, p, p.Egress); err != nil {
		return nil, err
	}
	switch p.Backend {
	case names.Docker:
		p.Docker = planDocker(m, p.Slug)
	case names.MacOSContainer:
		p.MacOSContainer = planMacOSContainer(m, p.Slug)
	case names.Smolvm:
		p.Smolvm = planSmolvm(p.Slug)
	}
	return p, nil
}

func planEgress(m *manifest.Manifest, prov *provider.Provider, slug string) (Egress, error) {
	e := Egress{
		Host: EgressHost, Port: EgressPort,
		ProxyURL:   "http://" + EgressHost + ":" + strconv.Itoa(EgressPort),
		Dir:        EgressDir,
		RoutesFile: path.Join(EgressDir, state.RoutesFile),
		CADir:      EgressDir,
		LogFile:    path.Join(EgressDir, state.AuditLogFile),
	}

	// Tokens: the bottle's, then the provider's it does not declare; a
	// list even when there are none (jq '.egress.tokens[]' must not fail).
	e.Tokens = []Token{}
	declared := map[string]bool{}
	for name, src := range m.Bottle.Tokens {
		e.Tokens = append(e.Tokens, Token{Name: name, Env: src.Env, File: src.File, From: "bottle"})
		declared[name] = true
	}
	for _, t := range prov.Tokens {
		if !declared[t.Name] {
			e.Tokens = append(e.Tokens, Token{Name: t.Name, Env: t.Env, From: "provider"})
			declared[t.Name] = true
		}
	}
	sort.Slice(e.Tokens, func(i, j int) bool { return e.Tokens[i].Name < e.Tokens[j].Name })
	e.SidecarEnv = []string{TokenEnvPrefix + CanaryToken}
	for _, t := range e.Tokens {
		e.SidecarEnv = append(e.SidecarEnv, TokenEnvPrefix+t.Name)
	}
	sort.Strings(e.SidecarEnv)

	// Routes: copies, so that filling in placeholders leaves the manifest
	// as read.
	e.Routes = []routes.Route{}
	for _, r := range m.Bottle.Egress.Routes {
		e.Routes = append(e.Routes, copyRoute(r))
	}
	bottleRoutes := e.Routes
	defaults := prov.Routes
	if option(m, OptionTelemetry) {
		defaults = append(append([]routes.Route(nil), defaults...), prov.TelemetryRoutes...)
	}
	for _, r := range defaults {
		if !covered(bottleRoutes, r.Host) {
			e.Routes = append(e.Routes, copyRoute(r))
		}
	}
	for _, r := range e.Routes {
		if r.Inject != nil && !declared[r.Inject.Token] {
			return Egress{}, exit.Usage(
				fmt.Errorf("route %s injects token %s, which neither bottle %s nor template %s declares",
					r.String(), r.Inject.Token, m.Bottle.Name, prov.Name),
				fmt.Sprintf("declare it in the bottle's tokens: %s: {env: VARIABLE} or {file: PATH}", r.Inject.Token))
		}
	}
	for _, tok := range placeholderTokens(prov) {
		ph := placeholderOf(e.Routes, slug, tok)
		for i := range e.Routes {
			if in := e.Routes[i].Inject; in != nil && in.Token == tok && in.Placeholder == "" {
				in.Placeholder = ph
			}
		}
	}
	return e, nil
}

// covered reports whether a bottle route names host (exactly or by a
// wildcard): then the bottle's route decides, not the provider's default.
func covered(rs []routes.Route, host string) bool {
	for i := range rs {
		if rs[i].Host == host || rs[i].MatchHost(host) {
			return true
		}
	}
	return false
}

func copyRoute(r routes.Route) routes.Route { return r.Clone() }

// placeholderTokens are the tokens the provider's agent holds placeholders
// for, sorted.
func placeholderTokens(prov *provider.Provider) []string {
	seen := map[string]bool{}
	var toks []string
	for _, tok := range prov.Placeholders {
		if !seen[tok] {
			seen[tok] = true
			toks = append(toks, tok)
		}
	}
	sort.Strings(toks)
	return toks
}

// placeholderOf is the placeholder for tok: the one a bottle route sets, so
// the agent holds what the sidecar expects, else the derived one.
func placeholderOf(rs []routes.Route, slug, tok string) string {
	for _, r := range rs {
		if r.Inject != nil && r.Inject.Token == tok && r.Inject.Placeholder != "" {
			return r.Inject.Placeholder
		}
	}
	return Placeholder(slug, tok)
}

func planAgent(m *manifest.Manifest, prov *provider.Provider, p *Plan, e Egress) (Agent, error) {
	slug, canary := p.Slug, p.Canary
	a := Agent{
		Name: m.Agent.Name, Template: m.Agent.Template,
		Image:     "bb-agent-" + SlugBase(m.Agent.Template),
		BuildArgs: map[string]string{},
		Home:      prov.Home, User: prov.User,
		Workdir: Workdir, Workspace: m.Bottle.Workspace,
		CAFile:  AgentCAFile,
		Command: append([]string{}, prov.Command...),
		Prompt:  m.Agent.Prompt,
		GitUser: m.Agent.GitUser,

		Telemetry:    option(m, OptionTelemetry),
		ForwardLogin: option(m, OptionForwardLogin),
	}
	if a.GitUser == nil {
		a.GitUser = m.Bottle.GitUser
	}
	if prov.PromptArg && a.Prompt != "" {
		// A prompt that is a Markdown list ("- fix ...") is not an option.
		if strings.HasPrefix(a.Prompt, "-") {
			a.Command = append(a.Command, "--")
		}
		a.Command = append(a.Command, a.Prompt)
	}
	held := map[string]string{}
	for v, tok := range prov.Placeholders {
		held[v] = placeholderOf(e.Routes, slug, tok)
	}
	files, err := prov.Provision(provider.Bottle{Label: p.Label, Slug: slug, Color: p.Color, RGB: RGB(p.Color),
		Prompt: a.Prompt, Workdir: a.Workdir, Placeholders: held})
	if err != nil {
		return Agent{}, fmt.Errorf("provisioning the files of template %s: %w", prov.Name, err)
	}
	a.Files = append([]File{}, files...)
	df, err := planDockerfile(m, prov)
	if err != nil {
		return Agent{}, err
	}
	a.Dockerfile = df

	a.Env = map[string]string{}
	for k, v := range prov.Env {
		a.Env[k] = v
	}
	if !a.Telemetry {
		for k, v := range prov.NoTelemetryEnv {
			a.Env[k] = v
		}
	}
	a.Placeholders = map[string]string{}
	for v, tok := range prov.Placeholders {
		a.Env[v] = placeholderOf(e.Routes, slug, tok)
		a.Placeholders[v] = tok
	}
	// Set last: no provider may point the agent past the proxy or at
	// another CA.
	a.Env["HOME"] = prov.Home
	a.Env[CanaryEnv] = canary
	for _, v := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY", "all_proxy"} {
		a.Env[v] = e.ProxyURL
	}
	a.Env["NO_PROXY"], a.Env["no_proxy"] = NoProxy, NoProxy
	for _, v := range CAEnv {
		a.Env[v] = AgentCAFile
	}
	if g := a.GitUser; g != nil {
		a.Env["GIT_AUTHOR_NAME"], a.Env["GIT_COMMITTER_NAME"] = g.Name, g.Name
		a.Env["GIT_AUTHOR_EMAIL"], a.Env["GIT_COMMITTER_EMAIL"] = g.Email, g.Email
	}
	return a, nil
}

// planDockerfile walks the cascade: the bottle's dockerfile, the manifest's
// (a manifest has none yet), a plugin's Dockerfile, the provider's embedded
// one; Considered says what each step found.
func planDockerfile(m *manifest.Manifest, prov *provider.Provider) (Dockerfile, error) {
	if f := m.Bottle.Dockerfile; f != "" {
		return Dockerfile{Source: FromBottle, Path: f, Context: filepath.Dir(f),
			Reason:     fmt.Sprintf("bottle %s names a dockerfile", m.Bottle.Name),
			Considered: []string{FromBottle + ": " + f}}, nil
	}
	considered := []string{
		FromBottle + ": not set (bottle " + m.Bottle.Name + " names no dockerfile)",
		FromManifest + ": not set (a manifest has no top-level dockerfile)",
	}
	src, err := prov.DockerfileSource()
	if err != nil {
		return Dockerfile{}, err
	}
	if src.Path != "" {
		return Dockerfile{Source: FromPlugin, Path: src.Path, Context: filepath.Dir(src.Path), Reason: src.Reason,
			Considered: append(considered, FromPlugin+": "+src.Path)}, nil
	}
	if prov.Builtin {
		considered = append(considered, FromPlugin+": none (template "+prov.Name+" is a built-in)")
	} else {
		considered = append(considered, FromPlugin+": none (no plugin in the chain of "+prov.Name+" has a Dockerfile)")
	}
	return Dockerfile{Source: FromProvider, Builtin: src.Builtin, Reason: src.Reason,
		Considered: append(considered, FromProvider+": the built-in "+src.Builtin+"'s embedded Dockerfile")}, nil
}

func labels(m *manifest.Manifest, slug, role string) map[string]string {
	l := map[string]string{names.LabelSlug: slug, names.LabelAgent: m.Agent.Name}
	if role != "" {
		l[names.LabelRole] = role
	}
	return l
}

func planDocker(m *manifest.Manifest, slug string) *Docker {
	return &Docker{
		AgentContainer:   names.Agent(slug),
		SidecarContainer: names.Sidecar(slug),
		InternalNetwork:  names.Prefix + slug + "-internal",
		EgressNetwork:    names.Prefix + slug + "-egress",
		Labels:           labels(m, slug, ""),
		AgentLabels:      labels(m, slug, names.RoleAgent),
		SidecarLabels:    labels(m, slug, names.RoleEgress),
		Limits:           limits(AgentLimits),
		SidecarLimits:    limits(SidecarLimits),
		SecurityOpt:      []string{"no-new-privileges"},
		CapDrop:          []string{"ALL"},
	}
}

func planMacOSContainer(m *manifest.Manifest, slug string) *MacOSContainer {
	return &MacOSContainer{
		AgentContainer:   names.Agent(slug),
		SidecarContainer: names.Sidecar(slug),
		AgentNetwork:     "none",
		SidecarNetwork:   "default",
		Labels:           labels(m, slug, ""),
		Limits:           limits(AgentLimits),
		SidecarLimits:    limits(SidecarLimits),
	}
}

func planSmolvm(slug string) *Smolvm {
	return &Smolvm{
		VM:             names.Agent(slug),
		SidecarVM:      names.Sidecar(slug),
		Network:        SmolvmNetwork(slug),
		SidecarAddress: SmolvmSidecarAddress,
		Limits:         limits(AgentLimits),
		SidecarLimits:  limits(SidecarLimits),
	}
}

func limits(l Limits) Limits {
	b, err := ParseMemory(l.Memory)
	if err != nil {
		panic(err) // the defaults above are constants
	}
	l.MemoryBytes = b
	return l
}

// ParseMemory reads a memory size as docker writes it: a number of bytes,
// or with a suffix b, k, m, g (powers of 1024, either case).
func ParseMemory(s string) (int64, error) {
	mult := int64(1)
	num := s
	if n := len(s); n > 0 {
		switch s[n-1] {
		case 'b', 'B':
			num = s[:n-1]
		case 'k', 'K':
			mult, num = 1<<10, s[:n-1]
		case 'm', 'M':
			mult, num = 1<<20, s[:n-1]
		case 'g', 'G':
			mult, num = 1<<30, s[:n-1]
		}
	}
	v, err := strconv.ParseInt(num, 10, 64)
	if err != nil || v <= 0 || v > (1<<62)/mult {
		return 0, fmt.Errorf("memory %q: want a positive number with an optional b, k, m or g", s)
	}
	return v * mult, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// orList writes "a, b or c".
func orList(list []string) string {
	if len(list) == 1 {
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
