package egress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/routes"
)

// AgentRoute is a route as the agent sees it at GET /_bb/routes: which
// header a token goes into and the token's NAME, never a value or a
// placeholder.
type AgentRoute struct {
	Host      string       `json:"host"`
	Ports     []int        `json:"ports,omitempty"`
	Paths     []string     `json:"paths,omitempty"`
	Methods   []string     `json:"methods,omitempty"`
	Websocket bool         `json:"websocket,omitempty"`
	Inject    *AgentInject `json:"inject,omitempty"`
	// Git is the route's git gate: the repositories the agent may clone
	// and fetch, and the refs it may push.
	Git *routes.Git `json:"git,omitempty"`
}

// AgentInject names what the sidecar injects on a route.
type AgentInject struct {
	Header string `json:"header"`
	Token  string `json:"token"`
}

// RouteRequest is the agent's request for a route (POST /_bb/requests).
type RouteRequest struct {
	Host    string   `json:"host"`
	Methods []string `json:"methods,omitempty"`
	Paths   []string `json:"paths,omitempty"`
	Why     string   `json:"why"`
}

// RequestLine is one line of requests.jsonl.
type RequestLine struct {
	Time   time.Time `json:"time"`
	Client string    `json:"client"`
	RouteRequest
}

const (
	maxRequestBody = 8 << 10
	maxWhy         = 2000
)

// serveAgent is the agent's channel to the sidecar, http://bb.egress/_bb/.
func (s *Server) serveAgent(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	snap := s.state.Load()
	e := newEntry(r, Hostname, start)
	e.Route = Hostname
	if hit, ok := scanHead(snap.all, r); ok {
		s.block(w, r, snap, e, nil, hit, "the request's URL or headers")
		return
	}
	switch r.URL.Path {
	case "/_bb/routes":
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			s.agentError(w, r, snap, e, http.StatusMethodNotAllowed, "use GET")
			return
		}
		var out []AgentRoute
		for _, rt := range snap.table.Routes() {
			ar := AgentRoute{Host: rt.Host, Ports: rt.Ports, Paths: rt.Paths, Methods: rt.Methods, Websocket: rt.Websocket, Git: rt.Git}
			if rt.Inject != nil {
				ar.Inject = &AgentInject{Header: rt.Inject.Header, Token: rt.Inject.Token}
			}
			out = append(out, ar)
		}
		if out == nil {
			out = []AgentRoute{}
		}
		s.agentJSON(w, snap, e, http.StatusOK, map[string]any{"routes": out})
	case "/_bb/requests":
		if r.Method != http.MethodPost {
			s.agentError(w, r, snap, e, http.StatusMethodNotAllowed, "use POST")
			return
		}
		s.routeRequest(w, r, snap, e)
	default:
		s.agentError(w, r, snap, e, http.StatusNotFound, "no such thing; try GET /_bb/routes or POST /_bb/requests")
	}
}

func (s *Server) routeRequest(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBody+1))
	if err != nil {
		s.agentError(w, r, snap, e, http.StatusBadRequest, "reading the request: "+err.Error())
		return
	}
	// What was read is scanned first, also when it is refused as too large.
	if snap.all != nil {
		if hit, ok := snap.all.Search(data); ok {
			s.block(w, r, snap, e, nil, hit, "the request's body")
			return
		}
	}
	if len(data) > maxRequestBody {
		s.agentError(w, r, snap, e, http.StatusRequestEntityTooLarge, fmt.Sprintf("the request is over %d bytes", maxRequestBody))
		return
	}
	var req RouteRequest
	dec := json.NewDecoder(strings.NewReader(string(data)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || dec.More() {
		if err == nil {
			err = errors.New("more than one JSON document")
		}
		s.agentError(w, r, snap, e, http.StatusBadRequest, `want {"host":...,"methods":[...],"paths":[...],"why":...}: `+err.Error())
		return
	}
	req.Host = routes.CanonicalHost(req.Host)
	rt := routes.Route{Host: req.Host, Methods: req.Methods, Paths: req.Paths}
	if err := rt.Validate(); err != nil {
		s.agentError(w, r, snap, e, http.StatusBadRequest, "invalid route: "+err.Error())
		return
	}
	req.Why = strings.TrimSpace(req.Why)
	if req.Why == "" || len(req.Why) > maxWhy {
		s.agentError(w, r, snap, e, http.StatusBadRequest, fmt.Sprintf("why is required, at most %d bytes", maxWhy))
		return
	}
	if s.cfg.RequestsFile == "" {
		s.agentError(w, r, snap, e, http.StatusServiceUnavailable, "this sidecar does not take requests; ask the human directly")
		return
	}
	line, _ := json.Marshal(RequestLine{Time: time.Now().UTC(), Client: r.RemoteAddr, RouteRequest: req})
	if status, err := s.appendRequest(append(line, '\n')); err != nil {
		s.agentError(w, r, snap, e, status, err.Error())
		return
	}
	s.agentJSON(w, snap, e, http.StatusAccepted, map[string]any{
		"status": "requested", "host": req.Host,
		"note": "a human reviews requests; the route works once it appears in GET /_bb/routes"})
}

func (s *Server) appendRequest(line []byte) (int, error) {
	s.reqFileMu.Lock()
	defer s.reqFileMu.Unlock()
	f, err := os.OpenFile(s.cfg.RequestsFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		s.cfg.Logf("recording a route request: %v", err)
		return http.StatusInternalServerError, errors.New("cannot record the request")
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || fi.Size()+int64(len(line)) > s.cfg.MaxRequestsFile {
		return http.StatusInsufficientStorage, errors.New("too many pending requests; wait for the human to review them")
	}
	if _, err := f.Write(line); err != nil {
		s.cfg.Logf("recording a route request: %v", err)
		return http.StatusInternalServerError, errors.New("cannot record the request")
	}
	return 0, nil
}

func (s *Server) agentError(w http.ResponseWriter, r *http.Request, snap *snapshot, e audit.Entry, status int, msg string) {
	s.refuse(w, r, snap, e, status, audit.Deny, msg, "bb-egress: "+msg+"\n")
}

func (s *Server) agentJSON(w http.ResponseWriter, snap *snapshot, e audit.Entry, status int, v any) {
	data, _ := json.MarshalIndent(v, "", "  ")
	data = append(data, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(data)
	e.Status, e.Decision, e.Reason = status, audit.Allow, "the agent's channel"
	e.BytesDown = int64(len(data))
	e.DurationMS = ms(time.Since(e.Time))
	s.audit(e)
}
