package provenance

import (
	"crypto"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// Policy says who may sign an image and what its provenance must show. It
// carries its trust material (public keys, trusted roots) with it.
type Policy struct {
	// RequireDigest refuses an image named by tag.
	RequireDigest bool
	// Authorities whose signatures are accepted; one is enough.
	Authorities []Authority
	// Provenance, when set, requires a SLSA v1 provenance attestation.
	Provenance *Requirement
}

// Authority is a public key or a keyless identity.
type Authority struct {
	Name string
	// PublicKey is a PEM public key.
	PublicKey []byte
	// Keyless is an OIDC identity in a Fulcio certificate.
	Keyless *Keyless
}

// Keyless is an issuer and a subject (exact or a regular expression),
// checked against a trusted root: the certificate chains to its Fulcio,
// the entry is in its transparency log, and the certificate was valid when
// the log integrated the entry.
type Keyless struct {
	Issuer, Subject, SubjectRegExp string
	// TrustedRoot is a trusted_root.json.
	TrustedRoot []byte
}

// Requirement says what a SLSA v1 provenance must name.
type Requirement struct {
	BuilderIDs []string
	Sources    []Source
}

// Source is a repository images may be built from, with the refs that
// count as reviewed code.
type Source struct {
	URL           string
	ProtectedRefs []string
	// Auth reads the repository; it is not part of the policy's hash.
	Auth transport.AuthMethod
}

// Hash identifies the policy with its trust material: a verdict reached
// under one hash is never reused under another.
func (p *Policy) Hash() string {
	type src struct {
		URL  string
		Refs []string
	}
	type auth struct {
		Name, Issuer, Subject, SubjectRegExp string
		Key, Root                            string
	}
	doc := struct {
		RequireDigest bool
		Authorities   []auth
		Builders      []string
		Sources       []src
		Provenance    bool
	}{RequireDigest: p.RequireDigest, Provenance: p.Provenance != nil}
	for _, a := range p.Authorities {
		x := auth{Name: a.Name, Key: digestOf(a.PublicKey)}
		if k := a.Keyless; k != nil {
			x.Issuer, x.Subject, x.SubjectRegExp, x.Root = k.Issuer, k.Subject, k.SubjectRegExp, digestOf(k.TrustedRoot)
		}
		doc.Authorities = append(doc.Authorities, x)
	}
	if p.Provenance != nil {
		doc.Builders = p.Provenance.BuilderIDs
		for _, s := range p.Provenance.Sources {
			doc.Sources = append(doc.Sources, src{URL: gitops.NormalizeURL(s.URL), Refs: s.ProtectedRefs})
		}
	}
	b, _ := json.Marshal(doc)
	return digestOf(b)
}

// TrustHash identifies the trust material alone: the keys and trusted roots.
func (p *Policy) TrustHash() string {
	h := sha256.New()
	for _, a := range p.Authorities {
		h.Write([]byte(a.Name + "\x00" + digestOf(a.PublicKey)))
		if a.Keyless != nil {
			h.Write([]byte("\x00" + digestOf(a.Keyless.TrustedRoot)))
		}
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func digestOf(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Validate says whether every key and trusted root loads.
func (p *Policy) Validate() error {
	_, err := p.compile()
	return err
}

// authority is an Authority made ready to verify with.
type authority struct {
	name     string
	keyless  bool
	verifier *verify.Verifier
	identity verify.PolicyOption
}

// compile loads each authority's key or trusted root. A policy whose trust
// material does not load is refused as a whole.
func (p *Policy) compile() ([]authority, error) {
	if len(p.Authorities) == 0 {
		return nil, outcome.Failf(ReasonPolicyInvalid, "the policy names no authority")
	}
	var out []authority
	for _, a := range p.Authorities {
		c, err := compileAuthority(a)
		if err != nil {
			return nil, outcome.Failf(ReasonPolicyInvalid, "authority %s: %v", a.Name, err)
		}
		out = append(out, c)
	}
	return out, nil
}

func compileAuthority(a Authority) (authority, error) {
	switch {
	case a.Keyless != nil:
		k := a.Keyless
		tr, err := root.NewTrustedRootFromJSON(k.TrustedRoot)
		if err != nil {
			return authority{}, fmt.Errorf("the trusted root does not load: %w", err)
		}
		v, err := verify.NewVerifier(tr, verify.WithTransparencyLog(1), verify.WithIntegratedTimestamps(1))
		if err != nil {
			return authority{}, err
		}
		subjectRE := ""
		if k.SubjectRegExp != "" {
			if _, err := regexp.Compile(k.SubjectRegExp); err != nil {
				return authority{}, fmt.Errorf("subjectRegExp: %w", err)
			}
			subjectRE = "^(?:" + k.SubjectRegExp + ")$"
		}
		id, err := verify.NewShortCertificateIdentity(k.Issuer, "", k.Subject, subjectRE)
		if err != nil {
			return authority{}, err
		}
		return authority{name: a.Name, keyless: true, verifier: v, identity: verify.WithCertificateIdentity(id)}, nil
	case len(a.PublicKey) > 0:
		pub, err := cryptoutils.UnmarshalPEMToPublicKey(a.PublicKey)
		if err != nil {
			return authority{}, fmt.Errorf("the public key does not parse: %w", err)
		}
		sv, err := signature.LoadVerifier(pub, crypto.SHA256)
		if err != nil {
			return authority{}, fmt.Errorf("the public key is not usable: %w", err)
		}
		key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
		material := root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil })
		// A long-lived key has no certificate whose validity a log entry
		// must prove; the signature is checked as of now.
		v, err := verify.NewVerifier(material, verify.WithCurrentTime())
		if err != nil {
			return authority{}, err
		}
		return authority{name: a.Name, verifier: v, identity: verify.WithKey()}, nil
	}
	return authority{}, fmt.Errorf("sets neither a key nor a keyless identity")
}
