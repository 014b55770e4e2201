package provenance_test

import (
	"testing"
	"time"

	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/provenance"
)

// BenchmarkVerify measures one verification of a keyless-signed image with
// SLSA provenance, everything on loopback: cold (no cache: the registry is
// read, the bundles verified and the source repository's history fetched)
// and warm (the pass is cached; only the tag is resolved).
func BenchmarkVerify(b *testing.B) {
	f := newFixture(b, true)
	d := f.image()
	f.release(f.sigstore.Identity(subject, issuer), d, f.reviewed)
	p := f.policy(f.keylessAuthority())
	b.Run("cold", func(b *testing.B) {
		for b.Loop() {
			f.verifier = provenance.NewVerifier(provenance.DefaultRegistry(), 10*time.Second, b.TempDir(), gitops.DefaultLimits(), 64)
			if v := f.verify(d.String(), p, nil); v.Result != outcome.Success || v.Cached {
				b.Fatalf("%s: %s (cached %v)", v.Result, v.Message, v.Cached)
			}
		}
	})
	b.Run("warm", func(b *testing.B) {
		f.verify(d.String(), p, nil)
		for b.Loop() {
			if v := f.verify(d.String(), p, nil); !v.Cached {
				b.Fatalf("not cached: %s", v.Message)
			}
		}
	})
}
