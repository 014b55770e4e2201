// Package sigtest serves an OCI registry on loopback (go-containerregistry's
// in-process registry, with or without the referrers API) and signs images
// and attestations the way cosign v3 does: Sigstore bundles attached as
// referrers, with a key pair or keyless through sigstore-go's virtual
// Sigstore (a Fulcio CA, a Rekor log and a TSA in memory). It also writes
// cosign's legacy .sig tags.
package sigtest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/testing/ca"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	sigdsse "github.com/sigstore/sigstore/pkg/signature/dsse"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-dev/vigil/provenance"
)

// T is what the helpers need of a test. testing.TB has it; so does the
// demo, which signs its images with these helpers outside any test.
type T interface {
	Helper()
	Fatal(args ...any)
	Cleanup(func())
}

// Registry is an OCI registry on a loopback port.
type Registry struct {
	// Host is host:port, which go-containerregistry reaches over plain HTTP.
	Host   string
	stall  atomic.Bool
	fail   atomic.Int32
	tamper atomic.Value // digest string whose manifest is served altered
}

// NewRegistry serves a registry until the test ends; referrers says
// whether it has the OCI referrers API.
func NewRegistry(t T, referrers bool) *Registry {
	r := &Registry{}
	r.tamper.Store("")
	inner := registry.New(registry.WithReferrersSupport(referrers), registry.Logger(log.New(io.Discard, "", 0)))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.stall.Load() {
			select {
			case <-req.Context().Done():
			case <-time.After(time.Minute):
			}
			return
		}
		if code := r.fail.Load(); code != 0 {
			http.Error(w, "injected", int(code))
			return
		}
		if d := r.tamper.Load().(string); d != "" && req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/manifests/"+d) {
			rec := httptest.NewRecorder()
			inner.ServeHTTP(rec, req)
			body := append(rec.Body.Bytes()[:rec.Body.Len()-1:rec.Body.Len()-1], []byte(",\"annotations\":{\"x\":\"tampered\"}}")...)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			_, _ = w.Write(body)
			return
		}
		inner.ServeHTTP(w, req)
	}))
	t.Cleanup(func() { r.stall.Store(false); srv.Close() })
	r.Host = strings.TrimPrefix(srv.URL, "http://")
	return r
}

// Stall makes every request hang (until its client gives up) while on.
func (r *Registry) Stall(on bool) { r.stall.Store(on) }

// Fail answers every request with code while it is not 0.
func (r *Registry) Fail(code int) { r.fail.Store(int32(code)) }

// Tamper serves the manifest of digest with altered bytes.
func (r *Registry) Tamper(digest string) { r.tamper.Store(digest) }

// Push pushes a small random image to repo:tag and returns its digest.
func (r *Registry) Push(t T, repo, tag string) name.Digest {
	t.Helper()
	return Push(t, r.Host, repo, tag)
}

// Push pushes a small random image to host/repo:tag, in any registry, and
// returns its digest.
func Push(t T, host, repo, tag string) name.Digest {
	t.Helper()
	img, err := random.Image(256, 1)
	must(t, err)
	img = mutate.MediaType(img, types.OCIManifestSchema1)
	ref, err := name.NewTag(host + "/" + repo + ":" + tag)
	must(t, err)
	must(t, remote.Write(ref, img))
	d, err := img.Digest()
	must(t, err)
	return ref.Context().Digest(d.String())
}

// Signer makes Sigstore bundles over DSSE-wrapped in-toto statements.
type Signer interface {
	Bundle(t T, statement []byte) []byte
}

// Key signs with an ECDSA P-256 key, without a transparency log, as
// `cosign sign --key --tlog-upload=false` does.
type Key struct {
	priv *ecdsa.PrivateKey
	// PublicPEM is the public key in PEM, for a TrustPolicy's key authority.
	PublicPEM []byte
}

// NewKey makes a key pair.
func NewKey(t T) *Key {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	pub, err := cryptoutils.MarshalPublicKeyToPEM(priv.Public())
	must(t, err)
	return &Key{priv: priv, PublicPEM: pub}
}

// Bundle signs the statement into a v0.3 bundle with a public-key hint.
func (k *Key) Bundle(t T, statement []byte) []byte {
	t.Helper()
	sv, err := signature.LoadECDSASignerVerifier(k.priv, crypto.SHA256)
	must(t, err)
	signer, err := dsse.NewEnvelopeSigner(&sigdsse.SignerAdapter{SignatureSigner: sv, Pub: k.priv.Public()})
	must(t, err)
	env, err := signer.SignPayload(context.Background(), provenance.InTotoPayloadType, statement)
	must(t, err)
	return marshalBundle(t, &protobundle.VerificationMaterial{
		Content: &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{Hint: "vigil-test"}},
	}, envelopeProto(t, env))
}

// Sigstore is a virtual Fulcio, Rekor and TSA.
type Sigstore struct {
	vs *ca.VirtualSigstore
}

// NewSigstore makes a virtual Sigstore.
func NewSigstore(t T) *Sigstore {
	t.Helper()
	vs, err := ca.NewVirtualSigstore()
	must(t, err)
	return &Sigstore{vs: vs}
}

// TrustedRoot is the trusted_root.json of the virtual Sigstore.
func (s *Sigstore) TrustedRoot(t T) []byte {
	t.Helper()
	// The virtual logs carry their ids as hex text; a trusted root holds
	// the raw bytes, which the log entries name.
	raw := func(logs map[string]*root.TransparencyLog) map[string]*root.TransparencyLog {
		for id, l := range logs {
			b, err := hex.DecodeString(id)
			must(t, err)
			l.ID = b
		}
		return logs
	}
	tr, err := root.NewTrustedRoot(root.TrustedRootMediaType01, s.vs.FulcioCertificateAuthorities(), raw(s.vs.CTLogs()),
		s.vs.TimestampingAuthorities(), raw(s.vs.RekorLogs()))
	must(t, err)
	b, err := tr.MarshalJSON()
	must(t, err)
	return b
}

// Identity signs keyless as subject, with a certificate from issuer.
func (s *Sigstore) Identity(subject, issuer string) *Keyless {
	return &Keyless{s: s, Subject: subject, Issuer: issuer, After: 5 * time.Minute}
}

// Keyless signs with a fresh short-lived certificate (valid for 10
// minutes from now) and logs the signature in the virtual Rekor.
type Keyless struct {
	s               *Sigstore
	Subject, Issuer string
	// After is when, from now, the log integrates the entry; past 10
	// minutes the certificate has expired by then.
	After time.Duration
}

// Bundle signs the statement into a v0.3 bundle with the leaf
// certificate, the log entry with its inclusion proof and promise.
func (k *Keyless) Bundle(t T, statement []byte) []byte {
	t.Helper()
	ent, err := k.s.vs.AttestAtTime(k.Subject, k.Issuer, statement, time.Now().Add(k.After), true)
	must(t, err)
	vc, err := ent.VerificationContent()
	must(t, err)
	sc, err := ent.SignatureContent()
	must(t, err)
	entries, err := ent.TlogEntries()
	must(t, err)
	e := entries[0]
	proto := e.TransparencyLogEntry()
	logID := proto.GetLogId().GetKeyId()
	set, err := k.s.vs.RekorSignPayload(tlog.RekorPayload{
		Body: base64.StdEncoding.EncodeToString(proto.CanonicalizedBody), IntegratedTime: proto.IntegratedTime,
		LogIndex: proto.LogIndex, LogID: hex.EncodeToString(logID),
	})
	must(t, err)
	tle, err := provenance.LogEntry(proto.CanonicalizedBody, proto.IntegratedTime, proto.LogIndex, logID, set)
	must(t, err)
	tle.InclusionProof = proto.InclusionProof
	return marshalBundle(t, &protobundle.VerificationMaterial{
		Content:     &protobundle.VerificationMaterial_Certificate{Certificate: &protocommon.X509Certificate{RawBytes: vc.Certificate().Raw}},
		TlogEntries: []*protorekor.TransparencyLogEntry{tle},
	}, envelopeProto(t, sc.EnvelopeContent().RawEnvelope()))
}

func envelopeProto(t T, env *dsse.Envelope) *protodsse.Envelope {
	t.Helper()
	payload, err := base64.StdEncoding.DecodeString(env.Payload)
	must(t, err)
	out := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
	for _, s := range env.Signatures {
		raw, err := base64.StdEncoding.DecodeString(s.Sig)
		must(t, err)
		out.Signatures = append(out.Signatures, &protodsse.Signature{Sig: raw, Keyid: s.KeyID})
	}
	return out
}

func marshalBundle(t T, vm *protobundle.VerificationMaterial, env *protodsse.Envelope) []byte {
	t.Helper()
	b, err := protojson.Marshal(&protobundle.Bundle{
		MediaType:            "application/vnd.dev.sigstore.bundle.v0.3+json",
		VerificationMaterial: vm,
		Content:              &protobundle.Bundle_DsseEnvelope{DsseEnvelope: env},
	})
	must(t, err)
	return b
}

// Statement is an in-toto v1 statement about digest.
func Statement(t T, digest, predicateType string, predicate any) []byte {
	t.Helper()
	hexd := strings.TrimPrefix(digest, "sha256:")
	if predicate == nil {
		predicate = map[string]any{}
	}
	b, err := json.Marshal(map[string]any{
		"_type":         "https://in-toto.io/Statement/v1",
		"subject":       []any{map[string]any{"name": "image", "digest": map[string]string{"sha256": hexd}}},
		"predicateType": predicateType,
		"predicate":     predicate,
	})
	must(t, err)
	return b
}

// SLSA is a SLSA v1 provenance predicate: built by builder from commit of
// repo (recorded as resolvedDependencies git+<repo>@refs/heads/main).
func SLSA(builder, repo, commit string) map[string]any {
	return map[string]any{
		"buildDefinition": map[string]any{
			"buildType":          "https://vigil.dev/test-build/v1",
			"externalParameters": map[string]any{"repository": repo},
			"resolvedDependencies": []any{map[string]any{
				"uri":    "git+" + repo + "@refs/heads/main",
				"digest": map[string]string{"gitCommit": commit},
			}},
		},
		"runDetails": map[string]any{"builder": map[string]any{"id": builder}},
	}
}

// Sign attaches a cosign v3 image signature of d by s, as a referrer.
func Sign(t T, s Signer, d name.Digest) {
	t.Helper()
	Attach(t, d, s.Bundle(t, Statement(t, d.DigestStr(), provenance.PredicateSign, nil)))
}

// Attest attaches a SLSA v1 provenance of subject, signed by s, to d.
// subject is usually d itself; another digest makes a replayed attestation.
func Attest(t T, s Signer, d name.Digest, subject string, predicate map[string]any) {
	t.Helper()
	Attach(t, d, s.Bundle(t, Statement(t, subject, provenance.PredicateSLSA, predicate)))
}

// Attach pushes bundle as a referrer of d, as cosign v3 does: an OCI
// manifest with the bundle media type as artifactType, the empty config,
// the bundle as its only layer, and d as subject. go-containerregistry
// updates the sha256-<hex> fallback tag itself when the registry has no
// referrers API.
func Attach(t T, d name.Digest, bundle []byte) {
	t.Helper()
	const media = "application/vnd.dev.sigstore.bundle.v0.3+json"
	desc, err := remote.Get(d)
	must(t, err)
	layer := static.NewLayer(bundle, media)
	config := static.NewLayer([]byte("{}"), "application/vnd.oci.empty.v1+json")
	for _, l := range []v1.Layer{layer, config} {
		must(t, remote.WriteLayer(d.Context(), l))
	}
	descOf := func(l v1.Layer) v1.Descriptor {
		dg, err := l.Digest()
		must(t, err)
		size, err := l.Size()
		must(t, err)
		mt, err := l.MediaType()
		must(t, err)
		return v1.Descriptor{MediaType: mt, Digest: dg, Size: size}
	}
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		ArtifactType:  media,
		Config:        descOf(config),
		Layers:        []v1.Descriptor{descOf(layer)},
		Subject:       &v1.Descriptor{MediaType: desc.MediaType, Size: desc.Size, Digest: desc.Digest},
		Annotations:   map[string]string{"dev.sigstore.bundle.content": "dsse-envelope"},
	}
	raw, err := json.Marshal(m)
	must(t, err)
	dg, _, err := v1.SHA256(bytes.NewReader(raw))
	must(t, err)
	must(t, remote.Put(d.Context().Digest(dg.String()), rawManifest(raw)))
}

type rawManifest []byte

func (r rawManifest) RawManifest() ([]byte, error)        { return r, nil }
func (r rawManifest) MediaType() (types.MediaType, error) { return types.OCIManifestSchema1, nil }

// SignLegacy writes cosign's legacy signature tag sha256-<hex>.sig for d:
// a simple-signing payload naming claimed (usually d itself), signed by k,
// the signature in an annotation.
func SignLegacy(t T, k *Key, d name.Digest, claimed string) {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": d.Context().String()},
			"image":    map[string]string{"docker-manifest-digest": claimed},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	must(t, err)
	sum := sha256.Sum256(payload)
	sig, err := ecdsa.SignASN1(rand.Reader, k.priv, sum[:])
	must(t, err)
	img, err := mutate.Append(empty.Image, mutate.Addendum{
		Layer:       static.NewLayer(payload, "application/vnd.dev.cosign.simplesigning.v1+json"),
		MediaType:   "application/vnd.dev.cosign.simplesigning.v1+json",
		Annotations: map[string]string{"dev.cosignproject.cosign/signature": base64.StdEncoding.EncodeToString(sig)},
	})
	must(t, err)
	tag := d.Context().Tag(strings.Replace(d.DigestStr(), ":", "-", 1) + ".sig")
	must(t, remote.Write(tag, img))
}

func must(t T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
