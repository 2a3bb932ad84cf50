package state

import (
	"errors"
	"fmt"
)

// ErrInvalidSlug is wrapped by every error about a malformed slug.
var ErrInvalidSlug = errors.New("invalid slug")

// CheckSlug reports whether slug can name a bottle: a DNS label (RFC 1123)
// in lower case — 1 to 63 of a-z, 0-9 and '-', starting and ending with a
// letter or digit. A slug becomes a folder name, a container name and a
// hostname, so this is also what makes path traversal impossible: no '/',
// no '.', never empty.
func CheckSlug(slug string) error {
	if slug == "" {
		return fmt.Errorf("%w: empty", ErrInvalidSlug)
	}
	if len(slug) > 63 {
		return fmt.Errorf("%w %.20q...: longer than 63 characters", ErrInvalidSlug, slug)
	}
	for i := 0; i < len(slug); i++ {
		c := slug[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case c == '-' && i != 0 && i != len(slug)-1:
		default:
			return fmt.Errorf("%w %q: want lower-case letters, digits and inner '-' (a DNS label)", ErrInvalidSlug, slug)
		}
	}
	return nil
}
