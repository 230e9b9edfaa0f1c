package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	"github.com/spiffe/spire-plugin-sdk/plugintest"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	signerID = "spiffe://tcdist.test/distd/signer"
	jobID    = "spiffe://tcdist.test/ci/job"
)

func serve(t *testing.T) (*credentialcomposerv1.CredentialComposerPluginClient, *configv1.ConfigServiceClient) {
	t.Helper()
	plugin := new(Plugin)
	client := new(credentialcomposerv1.CredentialComposerPluginClient)
	config := new(configv1.ConfigServiceClient)
	plugintest.ServeInBackground(t, plugintest.Config{
		PluginServer:   credentialcomposerv1.CredentialComposerPluginServer(plugin),
		PluginClient:   client,
		ServiceServers: []pluginsdk.ServiceServer{configv1.ConfigServiceServer(plugin)},
		ServiceClients: []pluginsdk.ServiceClient{config},
	})
	return client, config
}

func configured(t *testing.T) *credentialcomposerv1.CredentialComposerPluginClient {
	t.Helper()
	client, config := serve(t)
	_, err := config.Configure(context.Background(), &configv1.ConfigureRequest{
		CoreConfiguration: &configv1.CoreConfiguration{TrustDomain: "tcdist.test"},
		HclConfiguration:  `spiffe_ids = ["` + signerID + `"]`,
	})
	if err != nil {
		t.Fatalf("Configure: %v", err)
	}
	return client
}

func attributes(extensions ...*credentialcomposerv1.X509Extension) *credentialcomposerv1.X509SVIDAttributes {
	return &credentialcomposerv1.X509SVIDAttributes{
		Subject:         &credentialcomposerv1.DistinguishedName{Country: []string{"US"}, Organization: []string{"SPIRE"}},
		DnsSans:         []string{"example.test"},
		ExtraExtensions: extensions,
	}
}

func compose(t *testing.T, client *credentialcomposerv1.CredentialComposerPluginClient, id string, in *credentialcomposerv1.X509SVIDAttributes) *credentialcomposerv1.X509SVIDAttributes {
	t.Helper()
	resp, err := client.ComposeWorkloadX509SVID(context.Background(), &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
		SpiffeId: id, Attributes: in, PublicKey: []byte("unused"),
	})
	if err != nil {
		t.Fatalf("ComposeWorkloadX509SVID(%s): %v", id, err)
	}
	return resp.GetAttributes()
}

// issue signs a certificate the way SPIRE does: its X509-SVID template
// (serverAuth and clientAuth), then the composed extra extensions.
func issue(t *testing.T, id string, attrs *credentialcomposerv1.X509SVIDAttributes) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(id)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		URIs:         []*url.URL{u},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	for _, ext := range attrs.GetExtraExtensions() {
		oid, err := parseTestOID(ext.GetOid())
		if err != nil {
			t.Fatal(err)
		}
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: oid, Critical: ext.GetCritical(), Value: ext.GetValue()})
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func parseTestOID(s string) (asn1.ObjectIdentifier, error) {
	var oid asn1.ObjectIdentifier
	for _, part := range strings.Split(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, err
		}
		oid = append(oid, n)
	}
	return oid, nil
}

func TestSignerGetsCodeSigningAndKeepsSPIREUsages(t *testing.T) {
	client := configured(t)
	out := compose(t, client, signerID, attributes())
	cert := issue(t, signerID, out)
	want := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageCodeSigning}
	if !slices.Equal(cert.ExtKeyUsage, want) {
		t.Fatalf("ExtKeyUsage = %v, want %v", cert.ExtKeyUsage, want)
	}
	n := 0
	for _, ext := range cert.Extensions {
		if ext.Id.Equal(oidExtKeyUsage) {
			n++
			if ext.Critical {
				t.Error("EKU extension is critical")
			}
		}
	}
	if n != 1 {
		t.Fatalf("%d EKU extensions, want 1", n)
	}
	// Subject and DNS names are left alone.
	if !proto.Equal(out.GetSubject(), attributes().GetSubject()) || !slices.Equal(out.GetDnsSans(), []string{"example.test"}) {
		t.Fatalf("subject or DNS names changed: %v", out)
	}
}

func TestOtherSVIDsAreUnchanged(t *testing.T) {
	client := configured(t)
	other := &credentialcomposerv1.X509Extension{Oid: "1.2.3.4", Value: []byte{0x05, 0x00}}
	for _, id := range []string{jobID, signerID + "/sub", "spiffe://tcdist.test/distd", "spiffe://other.test/distd/signer"} {
		in := attributes(other)
		out := compose(t, client, id, in)
		if !proto.Equal(out, in) {
			t.Errorf("%s: attributes changed: %v", id, out)
		}
		cert := issue(t, id, out)
		if slices.Contains(cert.ExtKeyUsage, x509.ExtKeyUsageCodeSigning) {
			t.Errorf("%s: got codeSigning", id)
		}
	}
}

func TestExistingEKUExtensionIsExtended(t *testing.T) {
	client := configured(t)
	value, _ := asn1.Marshal([]asn1.ObjectIdentifier{oidClientAuth})
	in := attributes(
		&credentialcomposerv1.X509Extension{Oid: "1.2.3.4", Value: []byte{0x05, 0x00}},
		&credentialcomposerv1.X509Extension{Oid: oidExtKeyUsage.String(), Value: value, Critical: true},
	)
	out := compose(t, client, signerID, in)
	if len(out.GetExtraExtensions()) != 2 || out.GetExtraExtensions()[0].GetOid() != "1.2.3.4" {
		t.Fatalf("extensions: %v", out.GetExtraExtensions())
	}
	eku := out.GetExtraExtensions()[1]
	var usages []asn1.ObjectIdentifier
	if _, err := asn1.Unmarshal(eku.GetValue(), &usages); err != nil {
		t.Fatal(err)
	}
	if len(usages) != 2 || !usages[0].Equal(oidClientAuth) || !usages[1].Equal(oidCodeSigning) || !eku.GetCritical() {
		t.Fatalf("EKU = %v critical=%v", usages, eku.GetCritical())
	}
	// Composing again adds nothing.
	again := compose(t, client, signerID, out)
	if !proto.Equal(again, out) {
		t.Fatalf("second compose changed the attributes: %v", again)
	}
}

func TestMalformedEKUExtensionIsAnError(t *testing.T) {
	client := configured(t)
	_, err := client.ComposeWorkloadX509SVID(context.Background(), &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
		SpiffeId:   signerID,
		Attributes: attributes(&credentialcomposerv1.X509Extension{Oid: oidExtKeyUsage.String(), Value: []byte{0x01}}),
	})
	if status.Code(err) != codes.Internal {
		t.Fatalf("err = %v, want Internal", err)
	}
}

func TestOtherRPCsAreUnimplemented(t *testing.T) {
	// SPIRE keeps the attributes as they are when a composer answers
	// Unimplemented.
	client := configured(t)
	ctx := context.Background()
	_, err := client.ComposeAgentX509SVID(ctx, &credentialcomposerv1.ComposeAgentX509SVIDRequest{SpiffeId: signerID, Attributes: attributes()})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ComposeAgentX509SVID: %v", err)
	}
	_, err = client.ComposeServerX509SVID(ctx, &credentialcomposerv1.ComposeServerX509SVIDRequest{Attributes: attributes()})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ComposeServerX509SVID: %v", err)
	}
	_, err = client.ComposeServerX509CA(ctx, &credentialcomposerv1.ComposeServerX509CARequest{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ComposeServerX509CA: %v", err)
	}
	_, err = client.ComposeWorkloadJWTSVID(ctx, &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{SpiffeId: signerID})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("ComposeWorkloadJWTSVID: %v", err)
	}
}

func TestUnconfiguredRefuses(t *testing.T) {
	client, _ := serve(t)
	_, err := client.ComposeWorkloadX509SVID(context.Background(), &credentialcomposerv1.ComposeWorkloadX509SVIDRequest{
		SpiffeId: signerID, Attributes: attributes(),
	})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
}

func TestConfiguration(t *testing.T) {
	_, config := serve(t)
	ctx := context.Background()
	core := &configv1.CoreConfiguration{TrustDomain: "tcdist.test"}
	for _, tc := range []struct {
		hcl, wantErr string
	}{
		{`spiffe_ids = []`, "at least one"},
		{``, "at least one"},
		{`spiffe_ids = ["not a spiffe id"]`, "not a spiffe id"},
		{`spiffe_ids = ["spiffe://other.test/distd/signer"]`, "not in the server's trust domain"},
		{`spiffe_ids = ["spiffe://tcdist.test/distd/signer/"]`, "spiffe://tcdist.test/distd/signer/"},
		{`spiffe_ids = "spiffe://tcdist.test/distd/signer"`, "failed to decode"},
		{`spiffe_ids = ["spiffe://tcdist.test/distd/signer", "spiffe://tcdist.test/other"]`, ""},
		{`spiffe_ids = [`, "failed to decode"},
	} {
		resp, err := config.Validate(ctx, &configv1.ValidateRequest{CoreConfiguration: core, HclConfiguration: tc.hcl})
		if err != nil {
			t.Fatalf("Validate(%q): %v", tc.hcl, err)
		}
		if tc.wantErr == "" {
			if !resp.GetValid() {
				t.Errorf("Validate(%q) = invalid: %v", tc.hcl, resp.GetNotes())
			}
			continue
		}
		if resp.GetValid() || len(resp.GetNotes()) != 1 || !strings.Contains(resp.GetNotes()[0], tc.wantErr) {
			t.Errorf("Validate(%q) = %v %v, want invalid with %q", tc.hcl, resp.GetValid(), resp.GetNotes(), tc.wantErr)
		}
		_, err = config.Configure(ctx, &configv1.ConfigureRequest{CoreConfiguration: core, HclConfiguration: tc.hcl})
		if status.Code(err) != codes.InvalidArgument {
			t.Errorf("Configure(%q) = %v, want InvalidArgument", tc.hcl, err)
		}
	}
}
