package exit

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCodeOf(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, CodeOK},
		{"usage", Usagef("bad %s", "flag"), CodeUsage},
		{"backend", Backend(errors.New("engine down")), CodeBackend},
		{"negative", Negative(nil), CodeNegative},
		{"status", Status(7), 7},
		{"wrapped", fmt.Errorf("doing it: %w", Backend(errors.New("x"))), CodeBackend},
		{"interrupted", fmt.Errorf("starting: %w", context.Canceled), CodeInterrupted},
		{"hint keeps the code", WithHint(Usage(errors.New("x")), "try again"), CodeUsage},
		// Not bad usage: nothing says the person's input was wrong.
		{"unclassified", errors.New("writing metadata.json: no space left on device"), CodeBackend},
		{"unclassified with a hint", WithHint(errors.New("x"), "try again"), CodeBackend},
	}
	for _, tt := range tests {
		if got := CodeOf(tt.err); got != tt.want {
			t.Errorf("%s: CodeOf = %d, want %d", tt.name, got, tt.want)
		}
	}
}

func TestHints(t *testing.T) {
	err := WithHint(fmt.Errorf("reading: %w", Usage(errors.New("bad"), "first")), "second")
	if diff := cmp.Diff([]string{"first", "second"}, Hints(err)); diff != "" {
		t.Errorf("hints (-want +got):\n%s", diff)
	}
	if err.Error() != "reading: bad" {
		t.Errorf("message %q", err)
	}
	if Hints(errors.New("plain")) != nil {
		t.Error("a plain error has hints")
	}
}
