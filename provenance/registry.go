package provenance

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"path"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/vigil-dev/vigil/outcome"
)

// Registry reads images and what refers to them, within limits.
type Registry struct {
	// Transport carries the requests; nil is http.DefaultTransport.
	Transport http.RoundTripper
	// MaxReferrers bounds the signatures and attestations read per image.
	MaxReferrers int
	// MaxBundleBytes bounds one bundle, signature payload or envelope.
	MaxBundleBytes int64
}

// DefaultRegistry reads at most 64 referrers of an image, each up to 1 MiB.
func DefaultRegistry() Registry {
	return Registry{MaxReferrers: 64, MaxBundleBytes: 1 << 20}
}

func (r Registry) options(ctx context.Context) []remote.Option {
	t := r.Transport
	if t == nil {
		t = http.DefaultTransport
	}
	t = checkDigests{t}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithTransport(t),
		// Unknown outcomes are retried by the caller with its own
		// backoff; one quick retry here smooths a single dropped request.
		remote.WithRetryBackoff(remote.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 2}),
	}
}

// pin resolves image to repository@digest. A tag is resolved by reading
// its manifest (its digest is computed from the bytes, not taken from a
// header); a digest is read to check the registry serves exactly that.
func (r Registry) pin(ctx context.Context, image string, requireDigest bool) (name.Digest, error) {
	ref, err := name.ParseReference(image, name.StrictValidation)
	if err != nil {
		if ref, err = name.ParseReference(image); err != nil {
			return name.Digest{}, outcome.Failf(ReasonBadImageReference, "image %q does not parse: %v", image, err)
		}
	}
	if _, byDigest := ref.(name.Digest); !byDigest && requireDigest {
		return name.Digest{}, outcome.Failf(ReasonNotPinned, "image %s names a tag; the policy requires a digest", image)
	}
	desc, err := remote.Get(ref, r.options(ctx)...)
	if err != nil {
		return name.Digest{}, registryError(ctx, err, "reading image "+image)
	}
	return ref.Context().Digest(desc.Digest.String()), nil
}

// registryError gives an error of the registry its outcome: a missing
// image, or access refused, is a Failure re-checked later; content that
// does not match its digest is a Failure; a timeout and what
// outcome.Classify finds Unknown (a 5xx, a 429, a transport error) are
// Unknown.
func registryError(ctx context.Context, err error, what string) error {
	var te *transport.Error
	switch {
	case ctx.Err() != nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded):
		return outcome.Unknownf(ReasonRegistryUnavailable, "%s: the registry did not answer before the timeout", what)
	case errors.Is(err, errDigestMismatch):
		return outcome.Failf(ReasonDigestMismatch, "%s: the registry served content that does not match the digest: %v", what, err)
	case errors.As(err, &te) && te.StatusCode == http.StatusNotFound:
		return outcome.Failf(ReasonImageNotFound, "%s: not found", what)
	case errors.As(err, &te) && (te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden):
		return outcome.Failf(ReasonImageNotFound, "%s: the registry refused access (%d)", what, te.StatusCode)
	case errors.As(err, &te) && outcome.HTTPStatus(te.StatusCode) == outcome.Unknown:
		return outcome.Unknownf(ReasonRegistryUnavailable, "%s: the registry answered %d", what, te.StatusCode)
	case errors.As(err, &te):
		return outcome.Failf(ReasonImageNotFound, "%s: the registry answered %d", what, te.StatusCode)
	}
	return &outcome.Error{Result: outcome.Classify(err), Reason: ReasonRegistryUnavailable, Err: fmt.Errorf("%s: %w", what, err)}
}

// errDigestMismatch is what reading content by digest returns when the
// bytes the registry served have another digest.
var errDigestMismatch = errors.New("the content does not match its digest")

// checkDigests is a RoundTripper that checks every manifest and blob read
// by digest against that digest as its body is read, and ends the body
// with errDigestMismatch when they differ. go-containerregistry checks
// too, but says so only in the text of an error.
type checkDigests struct{ next http.RoundTripper }

func (c checkDigests) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(req)
	if err != nil || req.Method != http.MethodGet || resp.StatusCode != http.StatusOK {
		return resp, err
	}
	i := strings.LastIndex(req.URL.Path, "/")
	kind, digest := path.Base(req.URL.Path[:max(i, 0)]), req.URL.Path[i+1:]
	hexDigest, ok := strings.CutPrefix(digest, "sha256:")
	if (kind != "manifests" && kind != "blobs") || !ok {
		return resp, nil
	}
	resp.Body = &digestReader{ReadCloser: resp.Body, want: hexDigest, hash: sha256.New()}
	return resp, nil
}

// digestReader hashes a body as it is read and checks the hash at its end.
type digestReader struct {
	io.ReadCloser
	want string
	hash hash.Hash
}

func (d *digestReader) Read(p []byte) (int, error) {
	n, err := d.ReadCloser.Read(p)
	d.hash.Write(p[:n])
	if err == io.EOF && hex.EncodeToString(d.hash.Sum(nil)) != d.want {
		return n, errDigestMismatch
	}
	return n, err
}

// bundleMediaPrefix starts the media type of every Sigstore bundle.
const bundleMediaPrefix = "application/vnd.dev.sigstore.bundle"

// emptyConfigMedia is the OCI empty descriptor's media type.
const emptyConfigMedia = "application/vnd.oci.empty.v1+json"

// Legacy cosign media types and annotations.
const (
	simpleSigningMedia = "application/vnd.dev.cosign.simplesigning.v1+json"
	dsseEnvelopeMedia  = "application/vnd.dsse.envelope.v1+json"
	annotationSig      = "dev.cosignproject.cosign/signature"
	annotationCert     = "dev.sigstore.cosign/certificate"
	annotationChain    = "dev.sigstore.cosign/chain"
	annotationRekor    = "dev.sigstore.cosign/bundle"
)

// found is one signature or attestation read from the registry, not yet
// verified: every field is untrusted.
type found struct {
	// where says where it was found, for messages.
	where string
	// bundle is a Sigstore bundle in JSON; legacy is set instead for
	// cosign's older tag layout.
	bundle []byte
	legacy *legacyLayer
}

// legacyLayer is one layer of a legacy .sig or .att manifest.
type legacyLayer struct {
	mediaType   string
	content     []byte
	annotations map[string]string
}

// discover lists what refers to the image: bundles through the referrers
// API (go-containerregistry falls back to the sha256-<hex> tag when the
// registry has no referrers API), then cosign's legacy .sig and .att tags.
func (r Registry) discover(ctx context.Context, d name.Digest) ([]found, error) {
	opts := r.options(ctx)
	idx, err := remote.Referrers(d, opts...)
	if err != nil && !isNotFound(err) {
		return nil, registryError(ctx, err, "listing the referrers of "+d.String())
	}
	var out []found
	if idx != nil {
		m, err := idx.IndexManifest()
		if err != nil {
			return nil, registryError(ctx, err, "reading the referrers of "+d.String())
		}
		for _, desc := range m.Manifests {
			// Some registries report the config's media type (the empty
			// descriptor) instead of the manifest's artifactType; such a
			// referrer is read and judged by its layer.
			at := desc.ArtifactType
			if !strings.HasPrefix(at, bundleMediaPrefix) && at != emptyConfigMedia && at != "" {
				continue
			}
			if len(out) >= r.MaxReferrers {
				break
			}
			b, err := r.bundleOf(ctx, d.Context().Digest(desc.Digest.String()))
			if err != nil {
				return nil, err
			}
			if b != nil {
				out = append(out, found{where: "referrer " + desc.Digest.String(), bundle: b})
			}
		}
	}
	for _, suffix := range []string{".sig", ".att"} {
		tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + suffix)
		layers, err := r.legacy(ctx, tag, r.MaxReferrers-len(out))
		if err != nil {
			return nil, err
		}
		for _, l := range layers {
			out = append(out, found{where: "tag " + tag.TagStr(), legacy: l})
		}
	}
	return out, nil
}

// bundleOf reads the bundle a referrer manifest holds in its first layer.
func (r Registry) bundleOf(ctx context.Context, ref name.Digest) ([]byte, error) {
	img, err := remote.Image(ref, r.options(ctx)...)
	if err != nil {
		return nil, registryError(ctx, err, "reading referrer "+ref.DigestStr())
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, registryError(ctx, err, "reading referrer "+ref.DigestStr())
	}
	if len(m.Layers) == 0 || !strings.HasPrefix(string(m.Layers[0].MediaType), bundleMediaPrefix) {
		return nil, nil
	}
	return r.blob(ctx, img, m.Layers[0], "referrer "+ref.DigestStr())
}

// legacy reads up to max layers of a cosign .sig or .att manifest; a tag
// that does not exist holds none.
func (r Registry) legacy(ctx context.Context, tag name.Tag, max int) ([]*legacyLayer, error) {
	if max <= 0 {
		return nil, nil
	}
	img, err := remote.Image(tag, r.options(ctx)...)
	if isNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, registryError(ctx, err, "reading "+tag.String())
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, registryError(ctx, err, "reading "+tag.String())
	}
	var out []*legacyLayer
	for _, l := range m.Layers {
		if len(out) >= max {
			break
		}
		if l.MediaType != simpleSigningMedia && l.MediaType != dsseEnvelopeMedia {
			continue
		}
		b, err := r.blob(ctx, img, l, tag.TagStr())
		if err != nil {
			return nil, err
		}
		out = append(out, &legacyLayer{mediaType: string(l.MediaType), content: b, annotations: l.Annotations})
	}
	return out, nil
}

// blob reads one layer, refusing one larger than MaxBundleBytes; its
// digest is checked by go-containerregistry as it is read.
func (r Registry) blob(ctx context.Context, img v1.Image, desc v1.Descriptor, where string) ([]byte, error) {
	if desc.Size > r.MaxBundleBytes {
		return nil, outcome.Failf(ReasonSignatureUntrusted, "%s: layer of %d bytes is over the limit of %d", where, desc.Size, r.MaxBundleBytes)
	}
	layer, err := img.LayerByDigest(desc.Digest)
	if err != nil {
		return nil, registryError(ctx, err, "reading "+where)
	}
	rc, err := layer.Compressed()
	if err != nil {
		return nil, registryError(ctx, err, "reading "+where)
	}
	defer func() { _ = rc.Close() }()
	b, err := io.ReadAll(io.LimitReader(rc, r.MaxBundleBytes+1))
	if err != nil {
		return nil, registryError(ctx, err, "reading "+where)
	}
	if int64(len(b)) > r.MaxBundleBytes {
		return nil, outcome.Failf(ReasonSignatureUntrusted, "%s: layer is over the limit of %d bytes", where, r.MaxBundleBytes)
	}
	return b, nil
}

func isNotFound(err error) bool {
	var te *transport.Error
	return errors.As(err, &te) && te.StatusCode == http.StatusNotFound
}
