package provenance

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	protodsse "github.com/sigstore/protobuf-specs/gen/pb-go/dsse"
	protorekor "github.com/sigstore/protobuf-specs/gen/pb-go/rekor/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/tlog"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// Predicate types Vigil reads.
const (
	// PredicateSign is what cosign v3 signs for an image: an in-toto
	// statement whose subject is the image's digest.
	PredicateSign = "https://sigstore.dev/cosign/sign/v1"
	// PredicateSLSA is a SLSA v1 provenance.
	PredicateSLSA = "https://slsa.dev/provenance/v1"
	// InTotoPayloadType is the DSSE payload type of an in-toto statement.
	InTotoPayloadType = "application/vnd.in-toto+json"
)

type kind int

const (
	kindOther kind = iota
	kindSignature
	kindProvenance
)

func (k kind) String() string {
	switch k {
	case kindSignature:
		return "signature"
	case kindProvenance:
		return "provenance"
	}
	return "attestation"
}

// entity is a found signature or attestation as a Sigstore bundle, ready
// to verify. Until it is verified nothing in it is trusted; kind and
// claims are read from the unverified content only to choose which
// checks apply and to explain a refusal.
type entity struct {
	where  string
	kind   kind
	bundle *bundle.Bundle
	// payload is the signed bytes of a legacy message signature (cosign's
	// simple-signing JSON), which names the digest it signs.
	payload []byte
	// claims are the digests the content says it is about.
	claims []string
}

// entityOf turns what was found into an entity. Content that is not a
// Sigstore bundle or a legacy cosign layer is an error the caller reports
// only if nothing else verifies.
func entityOf(f found) (*entity, error) {
	if f.legacy != nil {
		return legacyEntity(f)
	}
	b := &bundle.Bundle{Bundle: new(protobundle.Bundle)}
	if err := b.UnmarshalJSON(f.bundle); err != nil {
		return nil, fmt.Errorf("%s: not a Sigstore bundle: %w", f.where, err)
	}
	e := &entity{where: f.where, bundle: b}
	if env := b.GetDsseEnvelope(); env != nil {
		e.kind, e.claims = classifyStatement(env.GetPayloadType(), env.GetPayload())
	}
	return e, nil
}

// classifyStatement reads the predicate type and subject digests of an
// unverified in-toto statement.
func classifyStatement(payloadType string, payload []byte) (kind, []string) {
	if payloadType != InTotoPayloadType {
		return kindOther, nil
	}
	var st struct {
		PredicateType string `json:"predicateType"`
		Subject       []struct {
			Digest map[string]string `json:"digest"`
		} `json:"subject"`
	}
	if json.Unmarshal(payload, &st) != nil {
		return kindOther, nil
	}
	var claims []string
	for _, s := range st.Subject {
		if d, ok := s.Digest["sha256"]; ok {
			claims = append(claims, "sha256:"+d)
		}
	}
	switch st.PredicateType {
	case PredicateSign:
		return kindSignature, claims
	case PredicateSLSA:
		return kindProvenance, claims
	}
	return kindOther, claims
}

// legacyEntity rebuilds a Sigstore bundle from a layer of cosign's legacy
// .sig or .att tags: the signature and certificate from its annotations,
// the transparency-log entry from its Rekor bundle annotation. Only the
// payload and the signature over it are trusted after verification; the
// annotations are inputs to it, never facts.
// legacyMaterial is the verification material of a cosign legacy
// signature: its certificate chain (or a public key to be named by the
// policy) and its Rekor entry, from the annotations.
func legacyMaterial(f found) (*protobundle.VerificationMaterial, error) {
	l := f.legacy
	vm := &protobundle.VerificationMaterial{}
	if pem := l.annotations[annotationCert]; pem != "" {
		certs, err := cryptoutils.UnmarshalCertificatesFromPEM([]byte(pem + "\n" + l.annotations[annotationChain]))
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("%s: the certificate annotation does not parse", f.where)
		}
		chain := &protocommon.X509CertificateChain{}
		for _, c := range certs {
			chain.Certificates = append(chain.Certificates, &protocommon.X509Certificate{RawBytes: c.Raw})
		}
		vm.Content = &protobundle.VerificationMaterial_X509CertificateChain{X509CertificateChain: chain}
	} else {
		vm.Content = &protobundle.VerificationMaterial_PublicKey{PublicKey: &protocommon.PublicKeyIdentifier{}}
	}
	if rb := l.annotations[annotationRekor]; rb != "" {
		entry, err := rekorEntry(rb)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.where, err)
		}
		vm.TlogEntries = []*protorekor.TransparencyLogEntry{entry}
	}
	return vm, nil
}

func legacyEntity(f found) (*entity, error) {
	l := f.legacy
	vm, err := legacyMaterial(f)
	if err != nil {
		return nil, err
	}
	pb := &protobundle.Bundle{MediaType: "application/vnd.dev.sigstore.bundle+json;version=0.1", VerificationMaterial: vm}
	if len(vm.TlogEntries) == 0 {
		pb.MediaType = "application/vnd.dev.sigstore.bundle.v0.3+json"
	}
	e := &entity{where: f.where}
	switch l.mediaType {
	case simpleSigningMedia:
		sig, err := base64.StdEncoding.DecodeString(l.annotations[annotationSig])
		if err != nil || len(sig) == 0 {
			return nil, fmt.Errorf("%s: the signature annotation is missing or not base64", f.where)
		}
		sum := sha256.Sum256(l.content)
		pb.Content = &protobundle.Bundle_MessageSignature{MessageSignature: &protocommon.MessageSignature{
			MessageDigest: &protocommon.HashOutput{Algorithm: protocommon.HashAlgorithm_SHA2_256, Digest: sum[:]},
			Signature:     sig,
		}}
		e.kind, e.payload, e.claims = kindSignature, l.content, simpleSigningClaims(l.content)
	case dsseEnvelopeMedia:
		var env dsse.Envelope
		if err := json.Unmarshal(l.content, &env); err != nil {
			return nil, fmt.Errorf("%s: not a DSSE envelope: %w", f.where, err)
		}
		payload, err := base64.StdEncoding.DecodeString(env.Payload)
		if err != nil {
			return nil, fmt.Errorf("%s: the envelope's payload is not base64", f.where)
		}
		pe := &protodsse.Envelope{Payload: payload, PayloadType: env.PayloadType}
		for _, s := range env.Signatures {
			raw, err := base64.StdEncoding.DecodeString(s.Sig)
			if err != nil {
				return nil, fmt.Errorf("%s: a signature is not base64", f.where)
			}
			pe.Signatures = append(pe.Signatures, &protodsse.Signature{Sig: raw, Keyid: s.KeyID})
		}
		pb.Content = &protobundle.Bundle_DsseEnvelope{DsseEnvelope: pe}
		e.kind, e.claims = classifyStatement(env.PayloadType, payload)
	}
	b, err := bundle.NewBundle(pb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.where, err)
	}
	e.bundle = b
	return e, nil
}

// simpleSigningClaims reads the digest a cosign simple-signing payload names.
func simpleSigningClaims(payload []byte) []string {
	var ss struct {
		Critical struct {
			Image struct {
				Digest string `json:"docker-manifest-digest"`
			} `json:"image"`
		} `json:"critical"`
	}
	if json.Unmarshal(payload, &ss) != nil || ss.Critical.Image.Digest == "" {
		return nil
	}
	return []string{ss.Critical.Image.Digest}
}

// rekorEntry turns cosign's Rekor bundle annotation into a log entry with
// its inclusion promise (the signed entry timestamp).
func rekorEntry(annotation string) (*protorekor.TransparencyLogEntry, error) {
	var rb struct {
		SignedEntryTimestamp []byte `json:"SignedEntryTimestamp"`
		Payload              struct {
			Body           string `json:"body"`
			IntegratedTime int64  `json:"integratedTime"`
			LogIndex       int64  `json:"logIndex"`
			LogID          string `json:"logID"`
		} `json:"Payload"`
	}
	if err := json.Unmarshal([]byte(annotation), &rb); err != nil {
		return nil, fmt.Errorf("the Rekor bundle annotation does not parse: %w", err)
	}
	body, err := base64.StdEncoding.DecodeString(rb.Payload.Body)
	if err != nil {
		return nil, fmt.Errorf("the Rekor entry body is not base64")
	}
	logID, err := hex.DecodeString(strings.TrimSpace(rb.Payload.LogID))
	if err != nil {
		return nil, fmt.Errorf("the Rekor log id is not hex")
	}
	return LogEntry(body, rb.Payload.IntegratedTime, rb.Payload.LogIndex, logID, rb.SignedEntryTimestamp)
}

// LogEntry makes a Rekor v1 log entry with its inclusion promise (the
// signed entry timestamp), as a bundle carries it.
func LogEntry(body []byte, integratedTime, logIndex int64, logID, set []byte) (*protorekor.TransparencyLogEntry, error) {
	var kv struct {
		Kind       string `json:"kind"`
		APIVersion string `json:"apiVersion"`
	}
	if err := json.Unmarshal(body, &kv); err != nil {
		return nil, fmt.Errorf("the Rekor entry body does not parse: %w", err)
	}
	tle := &protorekor.TransparencyLogEntry{
		LogIndex:          logIndex,
		LogId:             &protocommon.LogId{KeyId: logID},
		KindVersion:       &protorekor.KindVersion{Kind: kv.Kind, Version: kv.APIVersion},
		IntegratedTime:    integratedTime,
		InclusionPromise:  &protorekor.InclusionPromise{SignedEntryTimestamp: set},
		CanonicalizedBody: body,
	}
	if _, err := tlog.ParseTransparencyLogEntry(tle); err != nil {
		return nil, fmt.Errorf("the Rekor entry does not parse: %w", err)
	}
	return tle, nil
}
