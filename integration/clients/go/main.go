// Command workload-client exercises mandate-agent's Workload API with go-spiffe v2, a client
// we did not write. It prints one JSON object with what it received and exits non-zero on any
// failure. Usage: SPIFFE_ENDPOINT_SOCKET=unix:///path/api.sock workload-client <audience>
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "go client:", err)
		os.Exit(1)
	}
}

func run() error {
	if len(os.Args) != 2 {
		return fmt.Errorf("usage: workload-client <audience>")
	}
	audience := os.Args[1]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	client, err := workloadapi.New(ctx)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer client.Close()

	x509Ctx, err := client.FetchX509Context(ctx)
	if err != nil {
		return fmt.Errorf("fetch x509 context: %w", err)
	}
	svid := x509Ctx.DefaultSVID()
	bundle, err := x509Ctx.Bundles.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return fmt.Errorf("x509 bundle: %w", err)
	}
	jwt, err := client.FetchJWTSVID(ctx, jwtsvid.Params{Audience: audience})
	if err != nil {
		return fmt.Errorf("fetch jwt svid: %w", err)
	}
	jwtBundles, err := client.FetchJWTBundles(ctx)
	if err != nil {
		return fmt.Errorf("fetch jwt bundles: %w", err)
	}
	local, err := jwtsvid.ParseAndValidate(jwt.Marshal(), jwtBundles, []string{audience})
	if err != nil {
		return fmt.Errorf("validate jwt locally: %w", err)
	}
	remote, err := client.ValidateJWTSVID(ctx, jwt.Marshal(), audience)
	if err != nil {
		return fmt.Errorf("validate jwt via agent: %w", err)
	}
	source, err := workloadapi.NewX509Source(ctx)
	if err != nil {
		return fmt.Errorf("x509 source: %w", err)
	}
	defer source.Close()
	sourceSVID, err := source.GetX509SVID()
	if err != nil {
		return fmt.Errorf("x509 source svid: %w", err)
	}
	return json.NewEncoder(os.Stdout).Encode(map[string]any{
		"x509_spiffe_id":       svid.ID.String(),
		"chain_length":         len(svid.Certificates),
		"x509_authorities":     len(bundle.X509Authorities()),
		"jwt_spiffe_id":        jwt.ID.String(),
		"jwt_local_spiffe_id":  local.ID.String(),
		"jwt_remote_spiffe_id": remote.ID.String(),
		"source_spiffe_id":     sourceSVID.ID.String(),
	})
}
