// Command upstream is the stand-in for the internet in the escape suite and
// the offline demo: a tiny HTTP and HTTPS server, run FROM scratch on a
// bottle's egress network under names like allowed.test, that answers every
// request and records what it SAW — method, host, path, query, headers, body
// length — as one JSON line on stdout. Tests read those lines to prove what
// reached it (the injected token) and what did not (a canary, a denied
// request).
//
//	upstream cert --dir DIR NAME...    # a CA (ca.pem) and a leaf for NAMEs (cert.pem, key.pem)
//	upstream serve --name allowed --tls-dir DIR [--http :80] [--https :443] [--git-root DIR]
//
// With --git-root it is also a git forge: the smart-HTTP requests of the
// repositories under DIR are served by git's own http-backend (the image
// then needs git: it is built on the offline base), and over HTTPS they
// must carry the Authorization of $UPSTREAM_GIT_AUTH when it is set, as a
// forge wants its token.
//
// GET /echo/headers answers with the request's headers, as some real
// services do: whatever the sidecar adds to a request can come back to the
// agent in a response.
package main

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(2)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: upstream cert --dir DIR NAME... | upstream serve --name NAME [--tls-dir DIR]")
	}
	switch args[0] {
	case "cert":
		fs := flag.NewFlagSet("cert", flag.ContinueOnError)
		dir := fs.String("dir", ".", "where to write ca.pem, cert.pem and key.pem")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			return errors.New("cert: name at least one host")
		}
		return writeCerts(*dir, fs.Args())
	case "serve":
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		name := fs.String("name", "upstream", "the name it answers and records with")
		httpAddr := fs.String("http", ":80", "plain HTTP address (empty: none)")
		httpsAddr := fs.String("https", ":443", "HTTPS address (empty: none)")
		tlsDir := fs.String("tls-dir", "", "folder of cert.pem and key.pem (empty: no HTTPS)")
		gitRoot := fs.String("git-root", "", "serve git smart HTTP for the repositories under DIR")
		gitBackend := fs.String("git-backend", "/usr/lib/git-core/git-http-backend", "git's http-backend")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, os.Interrupt)
		defer stop()
		var git http.Handler
		if *gitRoot != "" {
			git = &cgi.Handler{Path: *gitBackend, Env: []string{"GIT_PROJECT_ROOT=" + *gitRoot, "GIT_HTTP_EXPORT_ALL=1",
				"HOME=" + *gitRoot, "GIT_CONFIG_NOSYSTEM=1",
				// The repositories are the test's, owned by whoever made them.
				"GIT_CONFIG_COUNT=1", "GIT_CONFIG_KEY_0=safe.directory", "GIT_CONFIG_VALUE_0=*"}}
		}
		return serve(ctx, *name, *httpAddr, *httpsAddr, *tlsDir, git, os.Getenv("UPSTREAM_GIT_AUTH"), stdout, stderr)
	}
	return fmt.Errorf("unknown command %q", args[0])
}

// echoCompressed answers with reply compressed as real servers do when
// asked (gzip, else deflate), or, for ?as=file, as a gzip file without a
// Content-Encoding: a compressed echo is how a token could come back
// unseen by a guard that reads only the bytes on the wire.
func echoCompressed(w http.ResponseWriter, r *http.Request, reply map[string]any) {
	ae := r.Header.Get("Accept-Encoding")
	var zw io.WriteCloser
	switch {
	case r.URL.Query().Get("as") == "file":
		w.Header().Set("Content-Type", "application/gzip")
		zw = gzip.NewWriter(w)
	case strings.Contains(ae, "gzip"):
		w.Header().Set("Content-Encoding", "gzip")
		zw = gzip.NewWriter(w)
	case strings.Contains(ae, "deflate"):
		w.Header().Set("Content-Encoding", "deflate")
		zw = zlib.NewWriter(w)
	default:
		json.NewEncoder(w).Encode(reply)
		return
	}
	json.NewEncoder(zw).Encode(reply)
	zw.Close()
}

// Seen is one request as the upstream saw it: a line of its stdout.
type Seen struct {
	Upstream string              `json:"upstream"`
	Time     time.Time           `json:"time"`
	Scheme   string              `json:"scheme"`
	Method   string              `json:"method"`
	Host     string              `json:"host"`
	Path     string              `json:"path"`
	Query    string              `json:"query"`
	Headers  map[string][]string `json:"headers"`
	BodyLen  int64               `json:"body_len"`
	Remote   string              `json:"remote"`
}

func serve(ctx context.Context, name, httpAddr, httpsAddr, tlsDir string, git http.Handler, gitAuth string, stdout, stderr io.Writer) error {
	var mu sync.Mutex
	enc := json.NewEncoder(stdout)
	handler := func(scheme string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			isGit := git != nil && (strings.HasSuffix(r.URL.Path, "/info/refs") ||
				strings.HasSuffix(r.URL.Path, "/git-upload-pack") || strings.HasSuffix(r.URL.Path, "/git-receive-pack"))
			var body []byte
			var n int64
			if isGit {
				body, _ = io.ReadAll(r.Body)
				n = int64(len(body))
			} else {
				n, _ = io.Copy(io.Discard, r.Body)
			}
			s := Seen{Upstream: name, Time: time.Now().UTC(), Scheme: scheme, Method: r.Method, Host: r.Host,
				Path: r.URL.Path, Query: r.URL.RawQuery, Headers: r.Header, BodyLen: n, Remote: r.RemoteAddr}
			mu.Lock()
			enc.Encode(s)
			mu.Unlock()
			if isGit {
				if scheme == "https" && gitAuth != "" && r.Header.Get("Authorization") != gitAuth {
					w.Header().Set("WWW-Authenticate", `Basic realm="upstream"`)
					http.Error(w, "upstream: who are you?", http.StatusUnauthorized)
					return
				}
				r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), n
				git.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Upstream", name)
			reply := map[string]any{"upstream": name, "message": "hello from " + name, "method": r.Method,
				"host": r.Host, "path": r.URL.Path, "body_len": n}
			if r.URL.Path == "/echo/headers" {
				reply["headers"] = r.Header
				echoCompressed(w, r, reply)
				return
			}
			json.NewEncoder(w).Encode(reply)
		})
	}
	var servers []*http.Server
	var lns []net.Listener
	if httpAddr != "" {
		ln, err := net.Listen("tcp", httpAddr)
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		servers = append(servers, &http.Server{Handler: handler("http"), ReadHeaderTimeout: 10 * time.Second})
	}
	if httpsAddr != "" && tlsDir != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "cert.pem"), filepath.Join(tlsDir, "key.pem"))
		if err != nil {
			return err
		}
		ln, err := net.Listen("tcp", httpsAddr)
		if err != nil {
			return err
		}
		lns = append(lns, tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}))
		servers = append(servers, &http.Server{Handler: handler("https"), ReadHeaderTimeout: 10 * time.Second})
	}
	if len(servers) == 0 {
		return errors.New("serve: nothing to listen on")
	}
	errc := make(chan error, len(servers))
	for i, srv := range servers {
		go func() { errc <- srv.Serve(lns[i]) }()
	}
	for _, ln := range lns {
		fmt.Fprintf(stderr, "upstream: %s listening on %s\n", name, ln.Addr())
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, srv := range servers {
		srv.Shutdown(sctx)
	}
	return nil
}

// writeCerts makes a throwaway CA and one leaf for names, both ECDSA P-256,
// valid for a day: the sidecar trusts ca.pem with --upstream-ca.
func writeCerts(dir string, names []string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: "bb test upstream CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafTmpl := &x509.Certificate{
		SerialNumber: serial(), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for file, block := range map[string]*pem.Block{
		"ca.pem":   {Type: "CERTIFICATE", Bytes: caDER},
		"cert.pem": {Type: "CERTIFICATE", Bytes: leafDER},
		"key.pem":  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(filepath.Join(dir, file), pem.EncodeToMemory(block), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}
