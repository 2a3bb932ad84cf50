// Package backend holds what the backends (docker, container, smolvm)
// share with the commands that drive them without importing them.
package backend

import (
	"context"
	"fmt"
	"sort"
	"sync"
)

// Reloader asks a running bottle's sidecar to re-read its routes file (the
// Docker backend sends it SIGHUP). The sidecar also polls the file, so a
// backend without a Reloader still gets the change, only later.
type Reloader interface {
	Reload(ctx context.Context, slug string) error
}

// ReloaderFunc adapts a function to Reloader.
type ReloaderFunc func(ctx context.Context, slug string) error

// Reload calls f.
func (f ReloaderFunc) Reload(ctx context.Context, slug string) error { return f(ctx, slug) }

// A backend registers its Reloader from its package's init, keyed by the
// name a bottle's metadata records as its backend. Commands that only need
// the hook (bb-egress apply) look it up here and so need not import the
// backend's client — though only backends linked into the binary are found.
var reloaders = registry{m: map[string]Reloader{}}

// RegisterReloader makes r the Reloader of backend name. It panics when r
// is nil or name already has one: both are programming errors.
func RegisterReloader(name string, r Reloader) { reloaders.register(name, r) }

// ReloaderFor returns the Reloader of backend name, if one is registered.
func ReloaderFor(name string) (Reloader, bool) { return reloaders.lookup(name) }

// Reloaders lists the backends that have a Reloader, sorted.
func Reloaders() []string { return reloaders.names() }

type registry struct {
	mu sync.RWMutex
	m  map[string]Reloader
}

func (g *registry) register(name string, r Reloader) {
	if r == nil {
		panic("backend: RegisterReloader of " + name + " with a nil Reloader")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, dup := g.m[name]; dup {
		panic(fmt.Sprintf("backend: RegisterReloader called twice for %q", name))
	}
	g.m[name] = r
}

func (g *registry) lookup(name string) (Reloader, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	r, ok := g.m[name]
	return r, ok
}

func (g *registry) names() []string {
	g.mu.RLock()
	defer g.mu.RUnlock()
	names := make([]string, 0, len(g.m))
	for n := range g.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
