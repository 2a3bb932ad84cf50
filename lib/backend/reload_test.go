package backend

import (
	"context"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRegistry(t *testing.T) {
	var called []string
	rec := func(name string) Reloader {
		return ReloaderFunc(func(_ context.Context, slug string) error {
			called = append(called, name+":"+slug)
			return nil
		})
	}
	tests := []struct {
		name      string
		register  []string
		lookup    string
		wantFound bool
		wantPanic bool
		wantNames []string
	}{
		{name: "empty", lookup: "docker", wantNames: []string{}},
		{name: "found", register: []string{"docker", "smolvm"}, lookup: "docker", wantFound: true, wantNames: []string{"docker", "smolvm"}},
		{name: "other backend", register: []string{"smolvm"}, lookup: "docker", wantNames: []string{"smolvm"}},
		{name: "twice", register: []string{"docker", "docker"}, wantPanic: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			called = nil
			g := &registry{m: map[string]Reloader{}}
			panicked := func() (p bool) {
				defer func() { p = recover() != nil }()
				for _, n := range tt.register {
					g.register(n, rec(n))
				}
				return false
			}()
			if panicked != tt.wantPanic {
				t.Fatalf("panicked = %v, want %v", panicked, tt.wantPanic)
			}
			if tt.wantPanic {
				return
			}
			r, ok := g.lookup(tt.lookup)
			if ok != tt.wantFound {
				t.Fatalf("lookup(%q) found = %v, want %v", tt.lookup, ok, tt.wantFound)
			}
			if ok {
				if err := r.Reload(context.Background(), "s1"); err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([]string{tt.lookup + ":s1"}, called); diff != "" {
					t.Errorf("calls (-want +got):\n%s", diff)
				}
			}
			if diff := cmp.Diff(tt.wantNames, g.names()); diff != "" {
				t.Errorf("names (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRegisterNilPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("registering a nil Reloader did not panic")
		}
	}()
	(&registry{m: map[string]Reloader{}}).register("docker", nil)
}
