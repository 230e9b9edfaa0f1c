// Command credentialcomposer-codesigning is a SPIRE server CredentialComposer
// plugin: it adds the codeSigning extended key usage (1.3.6.1.5.5.7.3.3) to the
// X509-SVIDs of a configured list of SPIFFE IDs, keeping the serverAuth and
// clientAuth usages SPIRE gives every X509-SVID. Sigstore clients (cosign,
// sigstore-go) refuse a signing certificate without codeSigning; SPIRE itself
// cannot be told to add it.
//
// Configuration (plugin_data in the server's CredentialComposer block):
//
//	spiffe_ids = ["spiffe://example.org/release/signer"]
//
// Every ID must be in the server's trust domain. SVIDs of other IDs, the
// server's CA and SVID, agent SVIDs and JWT-SVIDs are left as SPIRE makes them
// (the other RPCs answer Unimplemented, which SPIRE treats as "no change").
package main

import (
	"context"
	"encoding/asn1"
	"errors"
	"fmt"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/hcl"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire-plugin-sdk/pluginsdk"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

var (
	oidExtKeyUsage = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidServerAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 1}
	oidClientAuth  = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 2}
	oidCodeSigning = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 3}

	// SPIRE's X509-SVID template (pkg/server/credtemplate) sets these usages;
	// they are not among the attributes a composer receives, so an EKU
	// extension written here must repeat them.
	spireSVIDUsages = []asn1.ObjectIdentifier{oidServerAuth, oidClientAuth}
)

var _ pluginsdk.NeedsLogger = (*Plugin)(nil)

// Config is the plugin_data of the CredentialComposer block.
type Config struct {
	SPIFFEIDs []string `hcl:"spiffe_ids"`
}

// Plugin implements ComposeWorkloadX509SVID; the other CredentialComposer RPCs
// are the SDK's Unimplemented ones.
type Plugin struct {
	credentialcomposerv1.UnimplementedCredentialComposerServer
	configv1.UnimplementedConfigServer

	mu     sync.RWMutex
	ids    map[string]struct{}
	logger hclog.Logger
}

// SetLogger is called by the plugin framework with SPIRE's logger.
func (p *Plugin) SetLogger(logger hclog.Logger) {
	p.logger = logger
}

// parseConfig decodes and checks the HCL plugin_data for a server of trust
// domain td.
func parseConfig(hclConfig, td string) (map[string]struct{}, error) {
	config := new(Config)
	if err := hcl.Decode(config, hclConfig); err != nil {
		return nil, fmt.Errorf("failed to decode configuration: %v", err)
	}
	if len(config.SPIFFEIDs) == 0 {
		return nil, errors.New("spiffe_ids must name at least one SPIFFE ID")
	}
	trustDomain, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		return nil, fmt.Errorf("server trust domain %q: %v", td, err)
	}
	ids := make(map[string]struct{}, len(config.SPIFFEIDs))
	for _, s := range config.SPIFFEIDs {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return nil, fmt.Errorf("spiffe_ids: %q: %v", s, err)
		}
		if id.String() != s {
			return nil, fmt.Errorf("spiffe_ids: %q is not in canonical form (%q)", s, id.String())
		}
		if !id.MemberOf(trustDomain) {
			return nil, fmt.Errorf("spiffe_ids: %q is not in the server's trust domain %q", s, trustDomain.Name())
		}
		ids[s] = struct{}{}
	}
	return ids, nil
}

// Configure sets the list of SPIFFE IDs (replacing an earlier one).
func (p *Plugin) Configure(_ context.Context, req *configv1.ConfigureRequest) (*configv1.ConfigureResponse, error) {
	ids, err := parseConfig(req.HclConfiguration, req.GetCoreConfiguration().GetTrustDomain())
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p.mu.Lock()
	p.ids = ids
	p.mu.Unlock()
	if p.logger != nil {
		p.logger.Info("Adding the codeSigning extended key usage to X509-SVIDs", "spiffe_ids", len(ids))
	}
	return &configv1.ConfigureResponse{}, nil
}

// Validate checks a configuration without applying it.
func (p *Plugin) Validate(_ context.Context, req *configv1.ValidateRequest) (*configv1.ValidateResponse, error) {
	if _, err := parseConfig(req.HclConfiguration, req.GetCoreConfiguration().GetTrustDomain()); err != nil {
		return &configv1.ValidateResponse{Valid: false, Notes: []string{err.Error()}}, nil
	}
	return &configv1.ValidateResponse{Valid: true}, nil
}

// ComposeWorkloadX509SVID adds codeSigning to the extended key usages of the
// SVIDs of the configured IDs and returns every other SVID's attributes as
// given.
func (p *Plugin) ComposeWorkloadX509SVID(_ context.Context, req *credentialcomposerv1.ComposeWorkloadX509SVIDRequest) (*credentialcomposerv1.ComposeWorkloadX509SVIDResponse, error) {
	p.mu.RLock()
	ids := p.ids
	p.mu.RUnlock()
	if ids == nil {
		return nil, status.Error(codes.FailedPrecondition, "not configured")
	}
	attributes := req.GetAttributes()
	if attributes == nil {
		return nil, status.Error(codes.InvalidArgument, "request has no attributes")
	}
	if _, ok := ids[req.GetSpiffeId()]; !ok {
		return &credentialcomposerv1.ComposeWorkloadX509SVIDResponse{Attributes: attributes}, nil
	}
	extensions, err := withCodeSigning(attributes.ExtraExtensions)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "X509-SVID for %q: %v", req.GetSpiffeId(), err)
	}
	attributes.ExtraExtensions = extensions
	return &credentialcomposerv1.ComposeWorkloadX509SVIDResponse{Attributes: attributes}, nil
}

// withCodeSigning returns the extensions with codeSigning among the extended
// key usages: added to an EKU extension already present (from an earlier
// composer; its criticality kept), or as a new, non-critical EKU extension
// with SPIRE's usages and codeSigning. Extensions override the certificate
// template's own EKU.
func withCodeSigning(in []*credentialcomposerv1.X509Extension) ([]*credentialcomposerv1.X509Extension, error) {
	out := make([]*credentialcomposerv1.X509Extension, 0, len(in)+1)
	found := false
	for _, ext := range in {
		if ext.GetOid() != oidExtKeyUsage.String() {
			out = append(out, ext)
			continue
		}
		if found {
			return nil, errors.New("more than one extended key usage extension")
		}
		found = true
		var usages []asn1.ObjectIdentifier
		rest, err := asn1.Unmarshal(ext.GetValue(), &usages)
		if err != nil {
			return nil, fmt.Errorf("extended key usage extension: %v", err)
		}
		if len(rest) != 0 {
			return nil, errors.New("extended key usage extension: trailing data")
		}
		value, err := marshalUsages(appendIfMissing(usages, oidCodeSigning))
		if err != nil {
			return nil, err
		}
		out = append(out, &credentialcomposerv1.X509Extension{Oid: ext.GetOid(), Value: value, Critical: ext.GetCritical()})
	}
	if !found {
		usages := append(append([]asn1.ObjectIdentifier(nil), spireSVIDUsages...), oidCodeSigning)
		value, err := marshalUsages(usages)
		if err != nil {
			return nil, err
		}
		out = append(out, &credentialcomposerv1.X509Extension{Oid: oidExtKeyUsage.String(), Value: value})
	}
	return out, nil
}

func appendIfMissing(usages []asn1.ObjectIdentifier, oid asn1.ObjectIdentifier) []asn1.ObjectIdentifier {
	for _, u := range usages {
		if u.Equal(oid) {
			return usages
		}
	}
	return append(usages, oid)
}

func marshalUsages(usages []asn1.ObjectIdentifier) ([]byte, error) {
	value, err := asn1.Marshal(usages)
	if err != nil {
		return nil, fmt.Errorf("encoding extended key usages: %v", err)
	}
	return value, nil
}

func main() {
	plugin := new(Plugin)
	pluginmain.Serve(
		credentialcomposerv1.CredentialComposerPluginServer(plugin),
		configv1.ConfigServiceServer(plugin),
	)
}
