package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/bb-bottles/bb/lib/audit"
	"github.com/bb-bottles/bb/lib/canary"
	"github.com/bb-bottles/bb/lib/cli"
	"github.com/bb-bottles/bb/lib/egress"
	"github.com/bb-bottles/bb/lib/state"
)

func serveCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "serve",
		Usage: "run the egress sidecar",
		Description: "Runs the bottle's egress proxy: only the routes in --routes get out; TLS is intercepted\n" +
			"with the CA in --ca-dir (created there as ca.pem and ca-key.pem when absent); every request\n" +
			"is scanned for the secrets given as EGRESS_TOKEN_<NAME> (the canary among them) before it\n" +
			"leaves, and routes inject those tokens. One JSON line per decision goes to --log (stdout\n" +
			"when absent); the agent's route requests go to requests.jsonl beside it. SIGHUP, or any\n" +
			"change to the routes file, reloads the routes; an invalid file is refused and the old\n" +
			"routes stay. SIGTERM stops accepting and drains requests in flight for --drain, then closes\n" +
			"what is left; every request that reached an upstream has its line before the log closes.\n\n" +
			"The log is bounded: one client's lines for requests that sent nothing upstream (denials,\n" +
			"blocks, tunnels) have a budget, past which they are summed up in one line per client; and\n" +
			"--log rotates at --log-max-mib, keeping --log-keep files, its hash chain running across them.\n\n" +
			"A route with git: puts its host behind the git gate: only the listed repositories are\n" +
			"reachable, and a push is read whole into git/ beside the routes file, every object scanned\n" +
			"and its refs judged, before any of it goes upstream; the gate keeps its mirrors of the\n" +
			"upstream repositories there too.\n\n" +
			cli.Examples(
				"EGRESS_TOKEN_CANARY=$(bb-canary new) bb-egress serve --listen :3128 --routes routes.yaml --ca-dir . --log audit.jsonl",
				"kill -HUP $(pidof bb-egress)   # reload routes.yaml now",
			),
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "listen", Value: ":3128", Usage: "address to listen on: HOST:PORT, or unix:PATH for a socket (macos-container's sidecar)"},
			&ucli.StringFlag{Name: "routes", Required: true, Usage: "the routes `FILE` (YAML list)"},
			&ucli.StringFlag{Name: "ca-dir", Required: true, Usage: "`DIR` of ca.pem and ca-key.pem"},
			&ucli.StringFlag{Name: "log", Usage: "append the audit log to `FILE` (default stdout)"},
			&ucli.StringFlag{Name: "upstream-ca", Usage: "also trust the CA certificates in `FILE` upstream"},
			&ucli.StringFlag{Name: "slug", Usage: "the bottle's `SLUG`, named in a denial's hint (bb-egress allow SLUG HOST)"},
			&ucli.BoolFlag{Name: "allow-loopback", Usage: "let routes reach loopback and link-local addresses"},
			&ucli.BoolFlag{Name: "allow-private", Usage: "let routes reach private addresses (10/8, 172.16/12, 192.168/16, fc00::/7, 100.64/10, 198.18/15):\n" +
				"\tfor upstreams that are containers on a private Docker network (bb-launch passes it for the\n" +
				"\toffline demo and tests); without it a name resolving there is refused, as the Docker host\n" +
				"\tand a cloud network's neighbours live there"},
			&ucli.IntFlag{Name: "max-conns", Value: 1024, Usage: "concurrent client connections"},
			&ucli.DurationFlag{Name: "drain", Value: 10 * time.Second, Usage: "how long SIGTERM waits for requests in flight"},
			&ucli.IntFlag{Name: "log-max-mib", Value: 64, Usage: "rotate --log when it would pass this many MiB (0: never): audit.jsonl moves to audit.1.jsonl, and so on"},
			&ucli.IntFlag{Name: "log-keep", Value: 4, Usage: "rotated files of --log kept (at least 1); rotation deletes the oldest and records it in the log"},
		},
		Action: func(c *ucli.Context) error {
			if c.NArg() > 0 {
				return cli.Usagef("serve takes no arguments, got %q", c.Args().First())
			}
			return runServe(c.Context, cli.StreamsOf(c), serveOptions{
				Listen: c.String("listen"), Routes: c.String("routes"), CADir: c.String("ca-dir"),
				Log: c.String("log"), UpstreamCA: c.String("upstream-ca"), Slug: c.String("slug"),
				AllowLoopback: c.Bool("allow-loopback"), AllowPrivate: c.Bool("allow-private"),
				MaxConns: c.Int("max-conns"), Drain: c.Duration("drain"),
				LogMaxMiB: c.Int("log-max-mib"), LogKeep: c.Int("log-keep"),
			})
		},
	}
}

type serveOptions struct {
	Listen        string
	Routes        string
	CADir         string
	Log           string // "" or "-": stdout
	UpstreamCA    string
	Slug          string
	AllowLoopback bool
	AllowPrivate  bool
	MaxConns      int
	Drain         time.Duration
	LogMaxMiB     int // rotate the log at this size; 0 never
	LogKeep       int // rotated files kept
}

func runServe(ctx context.Context, s cli.Streams, o serveOptions) error {
	roots, err := x509.SystemCertPool()
	if err != nil {
		roots = x509.NewCertPool()
	}
	if o.UpstreamCA != "" {
		pem, err := os.ReadFile(o.UpstreamCA)
		if err != nil {
			return cli.Usage(fmt.Errorf("reading --upstream-ca: %w", err))
		}
		if !roots.AppendCertsFromPEM(pem) {
			return cli.Usagef("reading --upstream-ca %s: no PEM certificates", o.UpstreamCA)
		}
	}

	var aw *audit.Writer
	requests := filepath.Join(filepath.Dir(o.Routes), state.RequestsFile)
	if o.Log == "" || o.Log == "-" {
		aw = audit.NewStreamWriter(s.Out)
	} else {
		if o.LogMaxMiB < 0 || o.LogKeep < 0 {
			return cli.Usagef("--log-max-mib and --log-keep cannot be negative (got %d and %d)", o.LogMaxMiB, o.LogKeep)
		}
		aw, err = audit.OpenWriter(o.Log, audit.Rotate{MaxSize: int64(o.LogMaxMiB) << 20, MaxFiles: o.LogKeep})
		if err != nil {
			return cli.Backend(err)
		}
		requests = filepath.Join(filepath.Dir(o.Log), state.RequestsFile)
	}
	defer aw.Close()

	srv, err := egress.New(egress.Config{
		RoutesFile:    o.Routes,
		CADir:         o.CADir,
		Audit:         aw,
		RequestsFile:  requests,
		Secrets:       canary.SecretsFromEnv(s.Environ()),
		UpstreamRoots: roots,
		AllowLoopback: o.AllowLoopback,
		AllowPrivate:  o.AllowPrivate,
		MaxConns:      o.MaxConns,
		DrainTimeout:  o.Drain,
		Slug:          o.Slug,
		Logf:          func(format string, a ...any) { fmt.Fprintf(s.Err, "bb-egress: "+format+"\n", a...) },
	})
	if err != nil {
		return cli.Usage(fmt.Errorf("starting the sidecar: %w", err))
	}
	ln, err := listen(o.Listen)
	if err != nil {
		return cli.Backend(fmt.Errorf("listening on %s: %w", o.Listen, err))
	}
	fmt.Fprintf(s.Err, "bb-egress: listening on %s (CA %s)\n", ln.Addr(), filepath.Join(o.CADir, state.CACertFile))

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				srv.Reload() //nolint:errcheck // logged by the server
			}
		}
	}()

	if err := srv.Serve(ctx, ln); err != nil {
		return cli.Backend(err)
	}
	return nil
}

// listen listens on addr: HOST:PORT, or unix:PATH. A socket is open to
// every user of the machine it is on, which on macos-container is the
// sidecar's own: the runtime relays the agent's connections to it.
func listen(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, "unix:")
	if !ok {
		return net.Listen("tcp", addr)
	}
	if st, err := os.Lstat(path); err == nil && st.Mode().Type() == os.ModeSocket {
		os.Remove(path) // left by a sidecar that was killed
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, 0o666); err != nil {
		ln.Close()
		return nil, err
	}
	return ln, nil
}
