package provenance_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	. "github.com/onsi/gomega"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
	"github.com/vigil-dev/vigil/hack/sigtest"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/provenance"
)

const (
	builder = "https://ci.vigil.dev/builders/release@v1"
	issuer  = "https://token.ci.vigil.dev"
	subject = "https://ci.vigil.dev/app/workflows/release.yaml@refs/heads/main"
)

// fixture is a registry, a Git repository with a reviewed commit on main
// and an unmerged one on a branch, a release key and a virtual Sigstore.
type fixture struct {
	t        testing.TB
	reg      *sigtest.Registry
	key      *sigtest.Key
	sigstore *sigtest.Sigstore
	repo     *gittest.Repo
	url      string
	reviewed string // a commit on main
	later    string // a later commit on main
	unmerged string // a commit only on branch feature
	verifier *provenance.Verifier
	n        int
}

func newFixture(t testing.TB, referrers bool) *fixture {
	f := &fixture{t: t, reg: sigtest.NewRegistry(t, referrers), key: sigtest.NewKey(t), sigstore: sigtest.NewSigstore(t)}
	f.repo = gittest.NewRepo(t, "app.git")
	f.repo.Write("main.go", "package main\n")
	f.reviewed = f.repo.Commit("reviewed")
	f.repo.Write("feature.go", "package main\n")
	f.unmerged = f.repo.CommitOn("feature", "not merged")
	f.repo.Remove("feature.go")
	f.repo.Write("later.go", "package main\n")
	f.later = f.repo.Commit("later")
	f.url = f.repo.Daemon()
	f.verifier = provenance.NewVerifier(provenance.DefaultRegistry(), 5*time.Second, t.TempDir(), gitops.DefaultLimits(), 64)
	return f
}

// image pushes a fresh image.
func (f *fixture) image() name.Digest {
	f.n++
	return f.reg.Push(f.t, "app", "v"+string(rune('a'+f.n)))
}

func (f *fixture) keyAuthority() provenance.Authority {
	return provenance.Authority{Name: "release-key", PublicKey: f.key.PublicPEM}
}

func (f *fixture) keylessAuthority() provenance.Authority {
	return provenance.Authority{Name: "ci", Keyless: &provenance.Keyless{Issuer: issuer, Subject: subject, TrustedRoot: f.sigstore.TrustedRoot(f.t)}}
}

func (f *fixture) policy(auths ...provenance.Authority) *provenance.Policy {
	return &provenance.Policy{Authorities: auths, Provenance: &provenance.Requirement{
		BuilderIDs: []string{builder},
		Sources:    []provenance.Source{{URL: f.url, ProtectedRefs: []string{"refs/heads/main"}}},
	}}
}

// release signs d and attests it was built by builder from commit.
func (f *fixture) release(s sigtest.Signer, d name.Digest, commit string) {
	sigtest.Sign(f.t, s, d)
	sigtest.Attest(f.t, s, d, d.DigestStr(), sigtest.SLSA(builder, f.url, commit))
}

func (f *fixture) verify(image string, p *provenance.Policy, applied *provenance.Applied) provenance.Verdict {
	return f.verifier.Verify(context.Background(), provenance.Request{Image: image, Policy: p, Applied: applied})
}

func TestASignedImageWithMatchingProvenanceIsAdmittedByDigest(t *testing.T) {
	for _, referrers := range []bool{true, false} {
		name := map[bool]string{true: "referrers API", false: "sha256-<hex> fallback tag"}[referrers]
		t.Run(name, func(t *testing.T) {
			g := NewWithT(t)
			f := newFixture(t, referrers)

			byKey := f.image()
			f.release(f.key, byKey, f.reviewed)
			v := f.verify(f.reg.Host+"/app:vb", f.policy(f.keyAuthority()), nil)
			g.Expect(v.Result).To(Equal(outcome.Success), v.Message)
			g.Expect(v.Pinned).To(Equal(byKey.String()), "a tag is resolved to its digest")
			g.Expect(v.Signer).To(Equal("key release-key"))
			g.Expect(v.Builder).To(Equal(builder))
			g.Expect(v.SourceCommit).To(Equal(f.reviewed))

			keyless := f.image()
			f.release(f.sigstore.Identity(subject, issuer), keyless, f.reviewed)
			both := f.policy(f.key2(), f.keylessAuthority())
			v = f.verify(keyless.String(), both, nil)
			g.Expect(v.Result).To(Equal(outcome.Success), v.Message)
			g.Expect(v.Signer).To(Equal(subject + " (issuer " + issuer + ")"))
			g.Expect(v.Cached).To(BeFalse())

			again := f.verify(keyless.String(), both, nil)
			g.Expect(again.Cached).To(BeTrue(), "a pass is cached")
		})
	}
}

// key2 is an authority with a key that signs nothing here.
func (f *fixture) key2() provenance.Authority {
	return provenance.Authority{Name: "other", PublicKey: sigtest.NewKey(f.t).PublicPEM}
}

// badImage is an image set up to fail verification for one reason.
type badImage struct {
	name    string
	setup   func() (image string, applied *provenance.Applied)
	reason  string
	message string
}

// badSignatures are images whose signatures do not verify.
func badSignatures(t *testing.T, f *fixture) []badImage {
	return []badImage{{
		name:   "unsigned",
		setup:  func() (string, *provenance.Applied) { return f.image().String(), nil },
		reason: provenance.ReasonUnsigned, message: "no signature of sha256:",
	}, {
		name: "signed by another key",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			f.release(sigtest.NewKey(t), d, f.reviewed)
			return d.String(), nil
		},
		reason: provenance.ReasonSignatureUntrusted, message: "does not verify against authority release-key",
	}, {
		name: "signed by another identity",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			f.release(f.sigstore.Identity("https://ci.vigil.dev/fork/workflows/release.yaml@refs/heads/main", issuer), d, f.reviewed)
			return d.String(), nil
		},
		reason: provenance.ReasonSignatureUntrusted, message: "does not verify against authority ci",
	}, {
		name: "tampered digest",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			f.release(f.key, d, f.reviewed)
			f.reg.Tamper(d.DigestStr())
			return d.String(), nil
		},
		reason: provenance.ReasonDigestMismatch, message: "does not match the digest",
	}, {
		name: "an old attestation replayed onto a new digest",
		setup: func() (string, *provenance.Applied) {
			old, d := f.image(), f.image()
			sigtest.Sign(t, f.key, d)
			sigtest.Attest(t, f.key, d, old.DigestStr(), sigtest.SLSA(builder, f.url, f.reviewed))
			return d.String(), nil
		},
		reason: provenance.ReasonSubjectMismatch, message: "made for another image",
	}, {
		name: "a certificate used outside its validity window",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			expired := f.sigstore.Identity(subject, issuer)
			expired.After = 20 * time.Minute
			f.release(expired, d, f.reviewed)
			return d.String(), nil
		},
		reason: provenance.ReasonCertificateNotValid, message: "but the log entry was integrated at",
	}}
}

// badProvenance are images whose provenance does not bind them to reviewed
// code, or is missing.
func badProvenance(t *testing.T, f *fixture) []badImage {
	keyless := f.sigstore.Identity(subject, issuer)
	return []badImage{{
		name: "provenance from a repository not allowed",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			sigtest.Sign(t, f.key, d)
			sigtest.Attest(t, f.key, d, d.DigestStr(), sigtest.SLSA(builder, "https://git.example.com/fork/app", f.reviewed))
			return d.String(), nil
		},
		reason: provenance.ReasonSourceNotAllowed, message: "built from https://git.example.com/fork/app",
	}, {
		name: "provenance for a commit only on an unmerged branch",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			f.release(f.key, d, f.unmerged)
			return d.String(), nil
		},
		reason: provenance.ReasonCommitNotProtected, message: f.unmerged + " is not reachable from refs/heads/main",
	}, {
		name: "same repository: a commit not in the applied revision's history",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			f.release(f.key, d, f.later)
			return d.String(), &provenance.Applied{URL: f.url, Ref: "refs/heads/main", Revision: f.reviewed}
		},
		reason: provenance.ReasonCommitNotApplied, message: f.later + " is not the applied revision " + f.reviewed,
	}, {
		name: "signature present but provenance missing",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			sigtest.Sign(t, keyless, d)
			return d.String(), nil
		},
		reason: provenance.ReasonProvenanceMissing, message: "has no SLSA v1 provenance",
	}, {
		name: "builder not allowed",
		setup: func() (string, *provenance.Applied) {
			d := f.image()
			sigtest.Sign(t, f.key, d)
			sigtest.Attest(t, f.key, d, d.DigestStr(), sigtest.SLSA("https://laptop.example/me", f.url, f.reviewed))
			return d.String(), nil
		},
		reason: provenance.ReasonBuilderNotAllowed, message: `built by "https://laptop.example/me"`,
	}}
}

func TestEachBadImageIsBlockedWithItsOwnReason(t *testing.T) {
	f := newFixture(t, true)
	cases := append(badSignatures(t, f), badProvenance(t, f)...)
	seen := map[string]bool{}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			g := NewWithT(t)
			image, applied := c.setup()
			v := f.verify(image, f.policy(f.keyAuthority(), f.keylessAuthority()), applied)
			f.reg.Tamper("")
			g.Expect(v.Result).To(Equal(outcome.Failure), v.Message)
			g.Expect(v.Reason).To(Equal(c.reason), v.Message)
			g.Expect(v.Message).To(ContainSubstring(c.message))
			seen[c.reason] = true
		})
	}
	// "another key" and "another identity" share a reason; the other
	// nine are each their own.
	NewWithT(t).Expect(seen).To(HaveLen(len(cases) - 1))
	NewWithT(t).Expect(f.verifier.Verifications()).To(BeNumerically("==", len(cases)-1),
		"every image but the tampered one was verified, and none was cached")
}

func TestTheSameRepositoryAdmitsTheAppliedRevisionAndItsAncestors(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, true)
	for _, commit := range []string{f.reviewed, f.later} {
		d := f.image()
		f.release(f.key, d, commit)
		v := f.verify(d.String(), f.policy(f.keyAuthority()), &provenance.Applied{URL: f.url, Ref: "refs/heads/main", Revision: f.later})
		g.Expect(v.Result).To(Equal(outcome.Success), v.Message)
	}
}

func TestLegacyCosignSignatureTags(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, false)
	signatureOnly := &provenance.Policy{Authorities: []provenance.Authority{f.keyAuthority()}}

	d := f.image()
	sigtest.SignLegacy(t, f.key, d, d.DigestStr())
	v := f.verify(d.String(), signatureOnly, nil)
	g.Expect(v.Result).To(Equal(outcome.Success), v.Message)

	copied := f.image()
	sigtest.SignLegacy(t, f.key, copied, d.DigestStr())
	v = f.verify(copied.String(), signatureOnly, nil)
	g.Expect(v.Reason).To(Equal(provenance.ReasonSubjectMismatch), v.Message)

	forged := f.image()
	sigtest.SignLegacy(t, sigtest.NewKey(t), forged, forged.DigestStr())
	v = f.verify(forged.String(), signatureOnly, nil)
	g.Expect(v.Reason).To(Equal(provenance.ReasonSignatureUntrusted), v.Message)
}

func TestATagIsRefusedWhenThePolicyRequiresADigest(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, true)
	d := f.image()
	f.release(f.key, d, f.reviewed)
	p := f.policy(f.keyAuthority())
	p.RequireDigest = true
	v := f.verify(f.reg.Host+"/app:vb", p, nil)
	g.Expect(v.Reason).To(Equal(provenance.ReasonNotPinned))
	g.Expect(f.verify(d.String(), p, nil).Result).To(Equal(outcome.Success))
}

func TestAnUnavailableRegistryIsUnknownAndNothingIsCached(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, true)
	d := f.image()
	f.release(f.key, d, f.reviewed)
	f.verifier.Timeout = time.Second
	p := f.policy(f.keyAuthority())

	f.reg.Stall(true)
	v := f.verify(d.String(), p, nil)
	g.Expect(v.Result).To(Equal(outcome.Unknown))
	g.Expect(v.Reason).To(Equal(provenance.ReasonRegistryUnavailable))
	g.Expect(v.Message).To(ContainSubstring("before the timeout"))
	f.reg.Stall(false)

	for _, code := range []int{http.StatusServiceUnavailable, http.StatusTooManyRequests} {
		f.reg.Fail(code)
		v = f.verify(d.String(), p, nil)
		g.Expect(v.Result).To(Equal(outcome.Unknown), v.Message)
	}
	f.reg.Fail(0)

	v = f.verify(d.String(), p, nil)
	g.Expect(v.Result).To(Equal(outcome.Success), v.Message)
	g.Expect(v.Cached).To(BeFalse(), "no Unknown was cached")
}

func TestConcurrentRequestsForOneDigestShareOneVerification(t *testing.T) {
	g := NewWithT(t)
	f := newFixture(t, true)
	d := f.image()
	f.release(f.key, d, f.reviewed)
	p := f.policy(f.keyAuthority())
	var wg sync.WaitGroup
	verdicts := make([]provenance.Verdict, 200)
	for i := range verdicts {
		wg.Go(func() { verdicts[i] = f.verify(d.String(), p, nil) })
	}
	wg.Wait()
	for _, v := range verdicts {
		g.Expect(v.Result).To(Equal(outcome.Success))
	}
	g.Expect(f.verifier.Verifications()).To(BeNumerically("==", 1))

	// A new trust root is a new key: the next request verifies again.
	p.Authorities = append(p.Authorities, f.key2())
	g.Expect(f.verify(d.String(), p, nil).Cached).To(BeFalse())
	g.Expect(f.verifier.Verifications()).To(BeNumerically("==", 2))
}

func TestTheCacheHoldsOnlyPassesAndIsBounded(t *testing.T) {
	g := NewWithT(t)
	c := provenance.NewCache(2)
	c.Put(provenance.CacheKey{Digest: "a"}, provenance.Verdict{Outcome: outcome.Outcome{Result: outcome.Failure}})
	c.Put(provenance.CacheKey{Digest: "b"}, provenance.Verdict{Outcome: outcome.Outcome{Result: outcome.Unknown}})
	g.Expect(c.Len()).To(BeZero())
	for _, d := range []string{"a", "b", "c"} {
		c.Put(provenance.CacheKey{Digest: d}, provenance.Verdict{Outcome: outcome.Outcome{Result: outcome.Success}})
	}
	g.Expect(c.Len()).To(Equal(2))
	_, ok := c.Get(provenance.CacheKey{Digest: "a"})
	g.Expect(ok).To(BeFalse(), "the least recently used pass went first")
	_, ok = c.Get(provenance.CacheKey{Digest: "c"})
	g.Expect(ok).To(BeTrue())
}
