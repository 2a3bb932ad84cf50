package names

import "testing"

func TestBackend(t *testing.T) {
	for in, want := range map[string]string{
		"docker": Docker, "macos-container": MacOSContainer, "smolvm": Smolvm,
		// What bb-freeze wrote for Apple's container before the name was one.
		"container":  MacOSContainer,
		"":           "",
		"kubernetes": "kubernetes",
	} {
		if got := Backend(in); got != want {
			t.Errorf("Backend(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNames(t *testing.T) {
	if got := Agent("demo-a1b2"); got != "bot-bottle-demo-a1b2" {
		t.Errorf("Agent = %q", got)
	}
	if got := Sidecar("demo-a1b2"); got != "bot-bottle-demo-a1b2-egress" {
		t.Errorf("Sidecar = %q", got)
	}
}
