package evidence

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"strings"
	"testing"

	"github.com/sigstore/sigstore/pkg/cryptoutils"
)

// keyPair makes a P-256 key and returns its private and public PEM.
func keyPair(t *testing.T) (priv, pub []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if priv, err = cryptoutils.MarshalPrivateKeyToPEM(k); err != nil {
		t.Fatal(err)
	}
	if pub, err = cryptoutils.MarshalPublicKeyToPEM(k.Public()); err != nil {
		t.Fatal(err)
	}
	return priv, pub
}

func TestAFinalisedRecordSignedByThePlatformKeyVerifiesAndNothingElseDoes(t *testing.T) {
	priv, pub := keyPair(t)
	s, err := LoadSigner(priv)
	if err != nil {
		t.Fatal(err)
	}
	records, _ := chain(t)
	rec := records[1]
	if rec.Spec.Attestation, err = s.Attest(&rec); err != nil {
		t.Fatal(err)
	}
	if err := CheckAttestation(&rec, pub); err != nil {
		t.Fatalf("the record's own attestation: %v", err)
	}

	_, other := keyPair(t)
	if err := CheckAttestation(&rec, other); err == nil || !strings.Contains(err.Error(), "does not verify with this key") {
		t.Fatalf("another key: %v", err)
	}
	moved := rec
	moved.Spec.Attestation = rec.Spec.Attestation
	moved.Spec.Entries = records[2].Spec.Entries
	if err := CheckAttestation(&moved, pub); err == nil || !strings.Contains(err.Error(), "not this record's newest entry") {
		t.Fatalf("an attestation copied onto other entries: %v", err)
	}
	unsigned := records[0]
	if err := CheckAttestation(&unsigned, pub); err == nil || !strings.Contains(err.Error(), "no attestation") {
		t.Fatalf("a record without one: %v", err)
	}

	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEM, err := cryptoutils.MarshalPrivateKeyToPEM(r)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSigner(rsaPEM); err == nil || !strings.Contains(err.Error(), "ECDSA P-256") {
		t.Fatalf("an RSA key: %v", err)
	}
}
