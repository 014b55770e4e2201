package provenance

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"golang.org/x/sync/singleflight"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// Applied is what a GitSync applied: the repository, the ref it follows
// and the commit. When an image's provenance names this repository, its
// commit must be the applied one or an ancestor of it.
type Applied struct {
	URL, Ref, Revision string
}

// Request asks whether one image may run.
type Request struct {
	Image  string
	Policy *Policy
	// Applied is set when the workload came from a GitSync.
	Applied *Applied
}

// Verifier verifies images. It is safe for concurrent use: concurrent
// requests with the same key share one verification, and passes are
// cached.
type Verifier struct {
	Registry Registry
	// Timeout bounds one verification, registry and Git reads included.
	Timeout time.Duration
	// WorkDir holds the Git histories fetched to check a source commit.
	WorkDir string
	// GitLimits bound those fetches.
	GitLimits gitops.Limits

	cache  *Cache
	flight singleflight.Group
	runs   atomic.Int64
}

// NewVerifier makes a Verifier with a cache of up to cacheSize passes.
func NewVerifier(reg Registry, timeout time.Duration, workDir string, limits gitops.Limits, cacheSize int) *Verifier {
	return &Verifier{Registry: reg, Timeout: timeout, WorkDir: workDir, GitLimits: limits, cache: NewCache(cacheSize)}
}

// Verifications counts the verifications run, not served from the cache.
func (v *Verifier) Verifications() int64 { return v.runs.Load() }

// Verify decides whether the image may run under the policy. It never
// returns Success for anything it could not check.
func (v *Verifier) Verify(ctx context.Context, req Request) Verdict {
	ctx, cancel := context.WithTimeout(ctx, v.Timeout)
	defer cancel()
	verdict := v.verify(ctx, req)
	verdict.Image = req.Image
	return verdict
}

func (v *Verifier) verify(ctx context.Context, req Request) Verdict {
	p := req.Policy
	digest, err := v.Registry.pin(ctx, req.Image, p.RequireDigest)
	if err != nil {
		return failed(err, Verdict{})
	}
	key := CacheKey{Digest: digest.DigestStr(), Policy: p.Hash(), Trust: p.TrustHash()}
	if req.Applied != nil {
		key.Revision = gitops.NormalizeURL(req.Applied.URL) + "@" + req.Applied.Revision
	}
	if cached, ok := v.cache.Get(key); ok {
		cached.Cached = true
		return cached
	}
	out, _, _ := v.flight.Do(key.String(), func() (any, error) {
		// A flight that ended between the lookup above and this one has
		// cached its pass already.
		if cached, ok := v.cache.Get(key); ok {
			cached.Cached = true
			return cached, nil
		}
		v.runs.Add(1)
		verdict := v.check(ctx, req, digest)
		if verdict.Result == outcome.Success {
			v.cache.Put(key, verdict)
		}
		return verdict, nil
	})
	return out.(Verdict)
}

// check runs one verification of a pinned image.
func (v *Verifier) check(ctx context.Context, req Request, digest name.Digest) Verdict {
	base := Verdict{Digest: digest.DigestStr(), Pinned: digest.String()}
	auths, err := req.Policy.compile()
	if err != nil {
		return failed(err, base)
	}
	founds, err := v.Registry.discover(ctx, digest)
	if err != nil {
		return failed(err, base)
	}
	var ents []*entity
	var unreadable []string
	for _, f := range founds {
		e, err := entityOf(f)
		if err != nil {
			unreadable = append(unreadable, err.Error())
			continue
		}
		ents = append(ents, e)
	}
	sig, err := best(ents, kindSignature, auths, digest.DigestStr())
	if err != nil {
		if o := outcome.Of(err, ReasonRegistryUnavailable); o.Result == outcome.Failure && len(unreadable) > 0 && o.Reason == ReasonUnsigned {
			err = outcome.Failf(ReasonSignatureUntrusted, "no readable signature of %s: %s", digest.DigestStr(), strings.Join(unreadable, "; "))
		}
		return failed(err, base)
	}
	base.Signer = sig.signer
	if req.Policy.Provenance == nil {
		return pass(base, "signed by "+sig.signer)
	}
	prov, err := best(ents, kindProvenance, auths, digest.DigestStr())
	if err != nil {
		if outcome.ReasonOf(err) == ReasonUnsigned {
			err = outcome.Failf(ReasonProvenanceMissing, "%s is signed by %s, but has no SLSA v1 provenance attestation", digest.DigestStr(), sig.signer)
		}
		return failed(err, base)
	}
	src, err := v.checkProvenance(ctx, req, prov.result)
	base.Builder, base.SourceRepository, base.SourceCommit = src.builder, src.repository, src.commit
	if err != nil {
		return failed(err, base)
	}
	return pass(base, fmt.Sprintf("signed by %s; built by %s from %s at %s", sig.signer, src.builder, src.repository, src.commit))
}

func pass(v Verdict, msg string) Verdict {
	v.Outcome = outcome.Outcome{Result: outcome.Success, Reason: ReasonVerified, Message: msg}
	return v
}

// failed is the verdict of a verification that stopped at err. An error
// that carries no outcome says nothing of the image: Unknown.
func failed(err error, v Verdict) Verdict {
	v.Outcome = outcome.Of(err, ReasonRegistryUnavailable)
	return v
}

// verified is an entity that verified against an authority.
type verified struct {
	result *verify.VerificationResult
	signer string
}

// best verifies each entity of kind k against each authority and returns
// the first that verifies for digest. If none does, the error is the most
// telling refusal: a genuine signature for another digest, then a
// certificate used outside its validity, then an untrusted signature; with
// no entity of the kind at all, ReasonUnsigned.
func best(ents []*entity, k kind, auths []authority, digest string) (*verified, error) {
	var worst error
	rank := 0
	keep := func(r int, err error) {
		if r > rank {
			rank, worst = r, err
		}
	}
	for _, e := range ents {
		if e.kind != k {
			continue
		}
		for _, a := range auths {
			if a.keyless != e.hasCertificate() {
				keep(1, outcome.Failf(ReasonSignatureUntrusted, "the %s at %s is signed with %s, and the policy has no authority of that kind",
					e.kind, e.where, map[bool]string{true: "a certificate (keyless)", false: "a key"}[e.hasCertificate()]))
				continue
			}
			res, err := e.verifyWith(a, digest)
			if err == nil {
				return &verified{result: res, signer: signerOf(a, res)}, nil
			}
			switch outcome.ReasonOf(err) {
			case ReasonSubjectMismatch:
				keep(4, err)
			case ReasonCertificateNotValid:
				keep(3, err)
			default:
				keep(2, err)
			}
		}
	}
	if worst == nil {
		return nil, outcome.Failf(ReasonUnsigned, "no %s of %s was found (referrers, the sha256-<hex> tag, or cosign's legacy tags)", k, digest)
	}
	return nil, worst
}

// verifyWith checks one entity against one authority for digest.
func (e *entity) verifyWith(a authority, digest string) (*verify.VerificationResult, error) {
	raw, err := hex.DecodeString(strings.TrimPrefix(digest, "sha256:"))
	if err != nil {
		return nil, outcome.Failf(ReasonBadImageReference, "digest %s is not sha256", digest)
	}
	artifact := verify.WithArtifactDigest("sha256", raw)
	if e.payload != nil {
		artifact = verify.WithArtifact(bytes.NewReader(e.payload))
	}
	res, err := a.verifier.Verify(e.bundle, verify.NewPolicy(artifact, a.identity))
	if err == nil && e.payload != nil && !slices.Contains(e.claims, digest) {
		// A legacy signature verifies over its payload; the payload must
		// name this image.
		return nil, outcome.Failf(ReasonSubjectMismatch, "the %s at %s is signed by %s for %s, not for %s",
			e.kind, e.where, a.name, strings.Join(e.claims, ", "), digest)
	}
	if err == nil {
		return res, nil
	}
	if e.payload == nil {
		if _, again := a.verifier.Verify(e.bundle, verify.NewPolicy(verify.WithoutArtifactUnsafe(), a.identity)); again == nil {
			return nil, outcome.Failf(ReasonSubjectMismatch, "the %s at %s is signed by %s for %s, not for %s: it was made for another image",
				e.kind, e.where, a.name, strings.Join(e.claims, ", "), digest)
		}
	}
	if msg, outside := e.certificateOutsideValidity(); outside {
		return nil, outcome.Failf(ReasonCertificateNotValid, "the %s at %s: %s", e.kind, e.where, msg)
	}
	return nil, outcome.Failf(ReasonSignatureUntrusted, "the %s at %s does not verify against authority %s: %v", e.kind, e.where, a.name, err)
}

// hasCertificate says whether the entity is signed with a certificate
// rather than a key.
func (e *entity) hasCertificate() bool {
	vc, err := e.bundle.VerificationContent()
	return err == nil && vc.Certificate() != nil
}

// certificateOutsideValidity says whether the entity's certificate was
// used (a log entry integrated) outside the certificate's validity.
func (e *entity) certificateOutsideValidity() (string, bool) {
	vc, err := e.bundle.VerificationContent()
	if err != nil || vc.Certificate() == nil {
		return "", false
	}
	cert := vc.Certificate()
	entries, err := e.bundle.TlogEntries()
	if err != nil {
		return "", false
	}
	for _, entry := range entries {
		t := entry.IntegratedTime()
		if t.Before(cert.NotBefore) || t.After(cert.NotAfter) {
			return fmt.Sprintf("the certificate is valid from %s to %s, but the log entry was integrated at %s",
				cert.NotBefore.UTC().Format(time.RFC3339), cert.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339)), true
		}
	}
	return "", false
}

// signerOf names who signed: the certificate's subject and issuer for a
// keyless authority, the authority's name for a key.
func signerOf(a authority, res *verify.VerificationResult) string {
	if a.keyless && res.Signature != nil && res.Signature.Certificate != nil {
		c := res.Signature.Certificate
		return fmt.Sprintf("%s (issuer %s)", c.SubjectAlternativeName, c.Issuer)
	}
	return "key " + a.name
}
