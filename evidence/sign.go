package evidence

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	intoto "github.com/in-toto/attestation/go/v1"
	protobundle "github.com/sigstore/protobuf-specs/gen/pb-go/bundle/v1"
	protocommon "github.com/sigstore/protobuf-specs/gen/pb-go/common/v1"
	"github.com/sigstore/sigstore-go/pkg/bundle"
	"github.com/sigstore/sigstore-go/pkg/root"
	"github.com/sigstore/sigstore-go/pkg/sign"
	"github.com/sigstore/sigstore-go/pkg/verify"
	"github.com/sigstore/sigstore/pkg/cryptoutils"
	"github.com/sigstore/sigstore/pkg/signature"
	"google.golang.org/protobuf/encoding/protojson"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// A platform may give the controller a key to sign each ReleaseRecord as
// it is finalised: the record's in-toto Statement (see Statement), in a
// DSSE envelope, as a Sigstore bundle made with sigstore-go, stored in the
// record's spec.attestation in the same write that finalises it. The
// Statement's first subject is the record's newest entry hash, which the
// chain ties to every entry before it.

// inTotoPayload is the DSSE payload type of an in-toto Statement.
const inTotoPayload = "application/vnd.in-toto+json"

// Signer signs finalised records with an ECDSA P-256 key. It implements
// sigstore-go's sign.Keypair.
type Signer struct {
	key  *ecdsa.PrivateKey
	hint []byte
}

var _ sign.Keypair = (*Signer)(nil)

// LoadSigner reads an unencrypted PEM private key (ECDSA P-256).
func LoadSigner(pemBytes []byte) (*Signer, error) {
	k, err := cryptoutils.UnmarshalPEMToPrivateKey(pemBytes, cryptoutils.SkipPassword)
	if err != nil {
		return nil, fmt.Errorf("the evidence signing key does not parse: %w", err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		return nil, errors.New("the evidence signing key must be an ECDSA P-256 private key")
	}
	der, err := cryptoutils.MarshalPublicKeyToDER(ec.Public())
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(der)
	return &Signer{key: ec, hint: []byte(base64.StdEncoding.EncodeToString(sum[:]))}, nil
}

func (s *Signer) GetHashAlgorithm() protocommon.HashAlgorithm {
	return protocommon.HashAlgorithm_SHA2_256
}

func (s *Signer) GetSigningAlgorithm() protocommon.PublicKeyDetails {
	return protocommon.PublicKeyDetails_PKIX_ECDSA_P256_SHA_256
}

func (s *Signer) GetHint() []byte                { return s.hint }
func (s *Signer) GetKeyAlgorithm() string        { return "ECDSA" }
func (s *Signer) GetPublicKey() crypto.PublicKey { return s.key.Public() }

func (s *Signer) GetPublicKeyPem() (string, error) {
	b, err := cryptoutils.MarshalPublicKeyToPEM(s.key.Public())
	return string(b), err
}

// SignData signs the SHA-256 digest of data.
func (s *Signer) SignData(_ context.Context, data []byte) ([]byte, []byte, error) {
	digest := sha256.Sum256(data)
	sig, err := s.key.Sign(rand.Reader, digest[:], crypto.SHA256)
	return sig, digest[:], err
}

// Attest returns rec's Statement signed as a Sigstore bundle (JSON). rec's
// own attestation is not part of what is signed.
func (s *Signer) Attest(rec *vigilv1.ReleaseRecord) (string, error) {
	st, err := Statement(rec)
	if err != nil {
		return "", err
	}
	payload, err := protojson.Marshal(st)
	if err != nil {
		return "", err
	}
	b, err := sign.Bundle(&sign.DSSEData{Data: payload, PayloadType: inTotoPayload}, s, sign.BundleOptions{})
	if err != nil {
		return "", fmt.Errorf("signing ReleaseRecord %s: %w", rec.Name, err)
	}
	raw, err := protojson.Marshal(b)
	return string(raw), err
}

// CheckAttestation checks rec's attestation against a PEM public key: the
// signature verifies, and the signed Statement is about this record as it
// is now (its Rollout, revision and newest entry).
func CheckAttestation(rec *vigilv1.ReleaseRecord, publicKeyPEM []byte) error {
	if rec.Spec.Attestation == "" {
		return errors.New("it carries no attestation")
	}
	pub, err := cryptoutils.UnmarshalPEMToPublicKey(publicKeyPEM)
	if err != nil {
		return fmt.Errorf("the public key does not parse: %w", err)
	}
	sv, err := signature.LoadVerifier(pub, crypto.SHA256)
	if err != nil {
		return fmt.Errorf("the public key is not usable: %w", err)
	}
	key := root.NewExpiringKey(sv, time.Time{}, time.Time{})
	v, err := verify.NewVerifier(root.NewTrustedPublicKeyMaterial(func(string) (root.TimeConstrainedVerifier, error) { return key, nil }), verify.WithCurrentTime())
	if err != nil {
		return err
	}
	var pb protobundle.Bundle
	if err := protojson.Unmarshal([]byte(rec.Spec.Attestation), &pb); err != nil {
		return fmt.Errorf("the attestation is not a Sigstore bundle: %w", err)
	}
	b, err := bundle.NewBundle(&pb)
	if err != nil {
		return fmt.Errorf("the attestation is not a Sigstore bundle: %w", err)
	}
	if _, err := v.Verify(b, verify.NewPolicy(verify.WithoutArtifactUnsafe(), verify.WithKey())); err != nil {
		return fmt.Errorf("the attestation's signature does not verify with this key: %w", err)
	}
	var signed intoto.Statement
	if err := protojson.Unmarshal(pb.GetDsseEnvelope().GetPayload(), &signed); err != nil {
		return fmt.Errorf("the signed payload is not an in-toto Statement: %w", err)
	}
	want, err := Statement(rec)
	if err != nil {
		return err
	}
	got := signed.GetSubject()
	if signed.GetPredicateType() != PredicateType || len(got) == 0 || got[0].GetName() != want.GetSubject()[0].GetName() ||
		got[0].GetDigest()["sha256"] != want.GetSubject()[0].GetDigest()["sha256"] {
		return fmt.Errorf("the signed Statement is about %s, not this record's newest entry (%s@sha256:%s)",
			got0(got), want.GetSubject()[0].GetName(), want.GetSubject()[0].GetDigest()["sha256"])
	}
	return nil
}

func got0(s []*intoto.ResourceDescriptor) string {
	if len(s) == 0 {
		return "nothing"
	}
	return s[0].GetName() + "@sha256:" + s[0].GetDigest()["sha256"]
}
