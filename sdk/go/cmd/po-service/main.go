// Command po-service is a purchase-order service over mTLS (HTTP/1.1, keep-alive) that accepts
// AI agents acting for a user and refuses what their delegation does not allow. It has the
// flags, routes and JSON answers of the Rust example (examples/src/bin/po-service.rs), so the
// Rust ai-agent calls it unchanged:
//
//	go run ./sdk/go/cmd/po-service --listen 127.0.0.1:8443 --endpoint unix:///tmp/agent.sock
//
// The caller is read once per connection from the handshake; Authorize runs on every request,
// so a task closed while the connection stays open is refused on the next call.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/mandate-dev/mandate/sdk/go/crl"
	"github.com/mandate-dev/mandate/sdk/go/taskstatus"
	"github.com/mandate-dev/mandate/sdk/go/verify"
)

// prefixes is the repeatable --require-delegation-under flag.
type prefixes []string

func (p *prefixes) String() string     { return strings.Join(*p, ",") }
func (p *prefixes) Set(v string) error { *p = append(*p, v); return nil }

func main() {
	log.SetOutput(os.Stderr)
	log.SetFlags(log.LstdFlags | log.Lmicroseconds)
	if err := run(); err != nil {
		log.Printf("po-service: %v", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:8443", "address to listen on (port 0 picks a free port; the chosen address is printed)")
	endpoint := flag.String("endpoint", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "the Workload API socket of the local agent (unix:///path; default $SPIFFE_ENDPOINT_SOCKET)")
	pick := flag.String("spiffe-id", "", "the SVID to serve with when the workload holds several")
	var under prefixes
	flag.Var(&under, "require-delegation-under", "SPIFFE ID path prefix whose callers must carry a delegation (repeatable; default /ai)")
	staleness := flag.Duration("staleness", taskstatus.DefaultStaleness, "refuse every delegated caller once the newest task-status snapshot is older than this")
	flag.Parse()
	if len(under) == 0 {
		under = prefixes{"/ai"}
	}
	socket, err := taskstatus.SocketPathFromEndpoint(*endpoint)
	if err != nil {
		return err
	}

	source, err := x509Source(*endpoint, *pick)
	if err != nil {
		return err
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("no SVID from the Workload API: %w", err)
	}
	own := svid.ID

	status := taskstatus.Start(taskstatus.Config{SocketPath: socket, Staleness: *staleness})
	defer status.Close()
	revocations := crl.Start(socket)
	defer revocations.Close()
	ready := time.Now().Add(10 * time.Second)
	if !status.WaitReady(time.Until(ready)) || !revocations.WaitReady(time.Until(ready)) {
		log.Print("no task-status snapshot or CRLs yet: delegated callers are refused until both arrive")
	}
	verifier := verify.New(verify.RequireUnder(under...), status, revocations)

	tlsConfig := tlsconfig.MTLSServerConfig(source, source, tlsconfig.AuthorizeMemberOf(own.TrustDomain()))
	tlsConfig.NextProtos = []string{"http/1.1"}
	listener, err := net.Listen("tcp", *listen)
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	fmt.Printf("po-service listening on %s as %s\n", listener.Addr(), own)
	server := &http.Server{
		Handler:     &service{verifier: verifier},
		TLSConfig:   tlsConfig,
		ConnContext: newConnection,
		ErrorLog:    log.Default(),
	}
	err = server.ServeTLS(listener, "", "")
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// x509Source connects to the Workload API, waiting up to 60 s for the first SVID, and picks
// the SVID named pick when given.
func x509Source(endpoint, pick string) (*workloadapi.X509Source, error) {
	options := []workloadapi.X509SourceOption{workloadapi.WithClientOptions(workloadapi.WithAddr(endpoint))}
	if pick != "" {
		want, err := spiffeid.FromString(pick)
		if err != nil {
			return nil, fmt.Errorf("--spiffe-id: %w", err)
		}
		options = append(options, workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return svids[0]
		}))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	source, err := workloadapi.NewX509Source(ctx, options...)
	if err != nil {
		return nil, fmt.Errorf("timed out waiting for an SVID from the Workload API: %w", err)
	}
	return source, nil
}
