// Command tsa-server serves the RFC 3161 timestamp API of sigstore's
// timestamp-authority (its pkg/api and pkg/server, at the version go.mod
// requires) for the tcdist local stack.
//
// It is upstream's `timestamp-server serve` with three differences: it listens
// only where --host/--port say (upstream also serves Prometheus metrics on :2112
// of every interface, which is fixed in the code, so two stacks on one machine
// would collide and the stack would not stay on loopback), it has no pprof and
// no NTP monitoring (which contacts outside servers), and it offers only the
// file and memory signers. Flag names and defaults are upstream's.
package main

import (
	"time"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/sigstore/timestamp-authority/v2/pkg/log"
	"github.com/sigstore/timestamp-authority/v2/pkg/server"
)

const sigstorePolicyOID = "1.3.6.1.4.1.57264.2"

func main() {
	// pkg/generated/restapi registers the listener flags (--host, --port,
	// --scheme, timeouts) on pflag.CommandLine; the API reads the rest from viper.
	fs := pflag.CommandLine
	fs.String("timestamp-signer", "file", "timestamping authority signer: file or memory (memory generates a throwaway chain)")
	fs.String("timestamp-signer-hash", "sha256", "hash algorithm used by the signer: sha256, sha384 or sha512")
	fs.String("file-signer-key-path", "", "path to the PEM-encoded private key (PKCS#1, PKCS#8 or RFC 5915 EC)")
	fs.String("file-signer-passwd", "", "password to decrypt the private key, if it is encrypted")
	fs.String("certificate-chain-path", "", "path to the PEM-encoded certificate chain of the signer, leaf first, root last")
	fs.Bool("enforce-intermediate-eku", true, "require intermediate certificates to have the timestamping EKU")
	fs.Bool("include-chain-in-response", false, "include the issuing chain in responses when certReq is set, not only the leaf")
	fs.String("default-policy-oid", sigstorePolicyOID, "policy OID used when a request names none")
	fs.StringSlice("accepted-policy-oids", []string{sigstorePolicyOID}, "policy OIDs accepted in requests")
	fs.Bool("allow-custom-extensions", false, "copy custom request extensions into the signed timestamp")
	fs.Bool("use-http-201", false, "answer 201 Created instead of 200 OK")
	fs.Uint64("max-request-body-size", 1048576, "maximum request body size in bytes")
	fs.String("log-type", "dev", "logger type: dev or prod")
	pflag.Parse()
	if err := viper.BindPFlags(fs); err != nil {
		log.Logger.Fatal(err)
	}
	log.ConfigureLogger(viper.GetString("log-type"))

	switch s := viper.GetString("timestamp-signer"); s {
	case "file", "memory":
	default:
		log.Logger.Fatalf("unsupported --timestamp-signer %q (file or memory)", s)
	}

	srv := server.NewRestAPIServer(
		viper.GetString("host"),
		viper.GetInt("port"),
		viper.GetStringSlice("scheme"),
		false,
		viper.GetDuration("read-timeout"),
		viper.GetDuration("write-timeout"),
	)
	srv.CleanupTimeout = 10 * time.Second
	defer func() {
		if err := srv.Shutdown(); err != nil {
			log.Logger.Error(err)
		}
	}()
	if err := srv.Serve(); err != nil {
		log.Logger.Fatal(err)
	}
}
