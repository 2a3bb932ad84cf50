package gitgate

import (
	"fmt"
	"strings"
)

// The two services of git's smart HTTP protocol.
const (
	UploadPack  = "git-upload-pack"  // clone and fetch
	ReceivePack = "git-receive-pack" // push
)

// Endpoint is a request to a smart-HTTP endpoint of one repository.
type Endpoint struct {
	// Repo is the repository's path on the host, without ".git".
	Repo string
	// Service is UploadPack or ReceivePack.
	Service string
	// Advert is the GET of info/refs?service=...: the refs and
	// capabilities; otherwise it is the POST to the service itself.
	Advert bool
}

// EndpointError is a request the gate does not serve, with the reason an
// agent can act on.
type EndpointError struct{ Msg string }

func (e *EndpointError) Error() string { return e.Msg }

// ParseEndpoint reads method, the path as the client sent it (escaped) and
// the raw query of a request on a git route. Only the exact forms git's
// smart HTTP client sends are taken: "/<repo>[.git]/info/refs" with the
// query "service=git-upload-pack" or "service=git-receive-pack", and a POST
// to "/<repo>[.git]/git-upload-pack" or ".../git-receive-pack" with no
// query. Anything a server might read another way — an escaped character,
// "//", a "." or ".." segment, a trailing "/", another case, more query —
// is refused, so the repository the gate judged is the one the upstream
// serves.
func ParseEndpoint(method, escapedPath, rawQuery string) (Endpoint, error) {
	p := escapedPath
	switch {
	case !strings.HasPrefix(p, "/"):
		return Endpoint{}, &EndpointError{"the path does not start with /"}
	case strings.ContainsAny(p, "%\\;"):
		return Endpoint{}, &EndpointError{fmt.Sprintf("the path %q has an escaped character, a backslash or a ';': git sends repository paths plain", p)}
	case strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") ||
		strings.HasSuffix(p, "/.") || strings.HasSuffix(p, "/.."):
		return Endpoint{}, &EndpointError{fmt.Sprintf("the path %q has an empty, . or .. segment", p)}
	}
	var e Endpoint
	var rest string
	switch {
	case strings.HasSuffix(p, "/info/refs"):
		rest, e.Advert = strings.TrimSuffix(p, "/info/refs"), true
	case strings.HasSuffix(p, "/"+UploadPack):
		rest, e.Service = strings.TrimSuffix(p, "/"+UploadPack), UploadPack
	case strings.HasSuffix(p, "/"+ReceivePack):
		rest, e.Service = strings.TrimSuffix(p, "/"+ReceivePack), ReceivePack
	default:
		return Endpoint{}, &EndpointError{fmt.Sprintf("%s %s is not a git smart-HTTP endpoint the gate serves "+
			"(info/refs, git-upload-pack, git-receive-pack of a listed repository; no dumb HTTP, no LFS)", method, p)}
	}
	e.Repo = strings.TrimSuffix(strings.TrimPrefix(rest, "/"), ".git")
	if e.Repo == "" || strings.HasSuffix(e.Repo, "/") {
		return Endpoint{}, &EndpointError{fmt.Sprintf("the path %q names no repository", p)}
	}
	if e.Advert {
		if method != "GET" {
			return Endpoint{}, &EndpointError{fmt.Sprintf("%s of info/refs: git reads it with GET", method)}
		}
		switch rawQuery {
		case "service=" + UploadPack:
			e.Service = UploadPack
		case "service=" + ReceivePack:
			e.Service = ReceivePack
		default:
			return Endpoint{}, &EndpointError{fmt.Sprintf("info/refs with the query %q: the gate serves only service=%s or service=%s "+
				"(smart HTTP; the dumb protocol is not served)", rawQuery, UploadPack, ReceivePack)}
		}
		return e, nil
	}
	if method != "POST" {
		return Endpoint{}, &EndpointError{fmt.Sprintf("%s of %s: git posts to it", method, e.Service)}
	}
	if rawQuery != "" {
		return Endpoint{}, &EndpointError{fmt.Sprintf("%s with a query %q: git sends none", e.Service, rawQuery)}
	}
	return e, nil
}
