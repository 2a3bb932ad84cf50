package main

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httputil"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/bb-bottles/bb/scripts/internal/proc"
)

// serveUpstream is the upstream process: a plain Go TLS server (HTTP/1.1
// and HTTP/2) that demands the injected Authorization, reads the body and
// answers "ok LENGTH". Its address is the first line on stdout.
func serveUpstream() error {
	auth := os.Getenv("UPSTREAM_AUTH")
	if auth == "" {
		return errors.New("upstream: UPSTREAM_AUTH is not set (it is run by sidecarbench)")
	}
	if path := os.Getenv("SIDECARBENCH_CPUPROFILE"); path != "" {
		go profileOnSignal(path)
	}
	var conns atomic.Int64
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != auth {
				http.Error(w, "wrong or missing Authorization: the token was not injected", http.StatusUnauthorized)
				return
			}
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				return
			}
			w.Header().Set("X-Upstream-Proto", r.Proto)
			w.Header().Set("X-Upstream-Conns", strconv.FormatInt(conns.Load(), 10))
			fmt.Fprintf(w, "ok %d\n", n)
		})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(ln.Addr())
	stopOnSignal(srv)
	err = srv.ServeTLS(ln, os.Getenv("UPSTREAM_CERT"), os.Getenv("UPSTREAM_KEY"))
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// servePlainProxy is the yardstick: the least a Go TLS-intercepting proxy
// does for the same route. It answers CONNECT, terminates TLS with the
// upstream's own certificate (HTTP/2 or HTTP/1.1, as the client asks),
// sets the Authorization the sidecar would inject and passes the request on
// with httputil.ReverseProxy over HTTP/2 when the upstream offers it, as the
// sidecar does. No allow-list, no scan, no log, no limits.
func servePlainProxy() error {
	auth := os.Getenv("PLAIN_AUTH")
	if auth == "" {
		return errors.New("plainproxy: PLAIN_AUTH is not set (it is run by sidecarbench)")
	}
	if path := os.Getenv("SIDECARBENCH_CPUPROFILE"); path != "" {
		go profileOnSignal(path)
	}
	cert, err := tls.LoadX509KeyPair(os.Getenv("PLAIN_CERT"), os.Getenv("PLAIN_KEY"))
	if err != nil {
		return err
	}
	roots := x509.NewCertPool()
	if err := addPEM(roots, os.Getenv("PLAIN_UPSTREAM_CA")); err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL.Scheme, pr.Out.URL.Host = "https", pr.In.Host
			pr.Out.Header.Set("Authorization", auth)
		},
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true,
			MaxIdleConnsPerHost: 32, DisableCompression: true},
	}
	tlsConf := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	tunnels := &chanListener{ch: make(chan net.Conn), done: make(chan struct{})}
	inner := &http.Server{Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go inner.Serve(tunnels) //nolint:errcheck // ends when the process does

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	tunnels.addr = ln.Addr()
	fmt.Println(ln.Addr())
	outer := &http.Server{ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodConnect {
				http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
				return
			}
			c, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
				c.Close()
				return
			}
			select {
			case tunnels.ch <- tls.Server(c, tlsConf):
			case <-tunnels.done:
				c.Close()
			}
		})}
	stopOnSignal(outer)
	err = outer.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// chanListener hands the tunnels' TLS connections to an http.Server, which
// then speaks HTTP/2 on those that negotiate it.
type chanListener struct {
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
	addr net.Addr
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

func stopOnSignal(srv *http.Server) {
	stopped := make(chan os.Signal, 1)
	signal.Notify(stopped, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-stopped
		srv.Close()
	}()
}

// profileOnSignal: SIGUSR1 starts a CPU profile, SIGUSR2 writes it to
// path (via path+".tmp", so that path appears complete).
func profileOnSignal(path string) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	var f *os.File
	for s := range sig {
		switch {
		case s == syscall.SIGUSR1 && f == nil:
			var err error
			if f, err = os.Create(path + ".tmp"); err == nil {
				if err = pprof.StartCPUProfile(f); err != nil {
					f.Close()
					f = nil
				}
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "sidecarbench: cpu profile:", err)
			}
		case s == syscall.SIGUSR2 && f != nil:
			pprof.StopCPUProfile()
			f.Close()
			f = nil
			os.Rename(path+".tmp", path)
		}
	}
}

// startChild runs this program with a subcommand and reads the address it
// listens on from its first line.
func startChild(sub string, env ...string) (*exec.Cmd, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", err
	}
	cmd := exec.Command(self, sub)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("starting the %s: %w", sub, err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		proc.Stop(cmd)
		return nil, "", fmt.Errorf("the %s did not say where it listens: %w", sub, err)
	}
	return cmd, strings.TrimSpace(line), nil
}

// writeCerts writes a CA (upstream-ca.pem) and its leaf for 127.0.0.1
// (upstream.pem, upstream-key.pem), ECDSA P-256 as the sidecar's own.
func writeCerts(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sidecarbench CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{SerialNumber: big.NewInt(2),
		Subject: pkix.Name{CommonName: "127.0.0.1"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
		ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return errors.Join(
		os.WriteFile(filepath.Join(dir, "upstream-ca.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644),
		os.WriteFile(filepath.Join(dir, "upstream.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: leafDER}), 0o644),
		os.WriteFile(filepath.Join(dir, "upstream-key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
}

func addPEM(pool *x509.CertPool, file string) error {
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if !pool.AppendCertsFromPEM(raw) {
		return fmt.Errorf("%s: no PEM certificate", file)
	}
	return nil
}

func randomString(n int, enc func([]byte) string) string {
	b := make([]byte, n)
	rand.Read(b)
	return enc(b)
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}
