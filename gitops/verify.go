package gitops

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"

	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/ProtonMail/go-crypto/openpgp/packet"
	"github.com/go-git/go-git/v5/plumbing"
	"golang.org/x/crypto/ssh"

	"github.com/vigil-dev/vigil/outcome"
)

// Signature modes a GitSync may require.
const (
	ModeOpenPGP = "OpenPGP"
	ModeSSH     = "SSH"
)

// Verify checks that the commit is signed by one of the trusted keys and
// names the key that signed it. keys maps a name (a key of the Secret) to
// an armored OpenPGP key ring, or, in SSH mode, to authorized_keys lines.
// An unsigned commit, a signature of the other kind, a signature by a key
// not in keys, or one that does not match the commit is refused, and the
// error names the commit and why.
func (s *Snapshot) Verify(mode string, keys map[string][]byte) (string, error) {
	sig := strings.TrimSpace(s.commit.PGPSignature)
	short := s.Commit[:12]
	if sig == "" {
		return "", outcome.Failf(ReasonUnsigned, "commit %s is not signed", short)
	}
	if len(keys) == 0 {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s cannot be verified: the verification Secret holds no keys", short)
	}
	names := make([]string, 0, len(keys))
	for name := range keys {
		names = append(names, name)
	}
	sort.Strings(names)
	isSSH := strings.HasPrefix(sig, "-----BEGIN SSH SIGNATURE-----")
	switch {
	case mode == ModeSSH && !isSSH:
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s has an OpenPGP signature, but verify.mode is SSH", short)
	case mode != ModeSSH && isSSH:
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s has an SSH signature, but verify.mode is OpenPGP", short)
	case isSSH:
		return s.verifySSH(sig, names, keys)
	}
	for _, name := range names {
		if e, err := s.commit.Verify(string(keys[name])); err == nil {
			return fmt.Sprintf("%s (OpenPGP key %X)", name, e.PrimaryKey.Fingerprint), nil
		}
	}
	return "", outcome.Failf(ReasonUntrustedSignature, "commit %s is signed by OpenPGP key %s, which is not one of the trusted keys (%s), or the signature does not match the commit",
		short, pgpIssuer(sig), strings.Join(names, ", "))
}

// pgpIssuer is the key ID an armored signature claims, for messages only.
func pgpIssuer(sig string) string {
	block, err := armor.Decode(strings.NewReader(sig))
	if err != nil {
		return "(unreadable)"
	}
	p, err := packet.Read(block.Body)
	if err != nil {
		return "(unreadable)"
	}
	if s, ok := p.(*packet.Signature); ok {
		if s.IssuerFingerprint != nil {
			return fmt.Sprintf("%X", s.IssuerFingerprint)
		}
		if s.IssuerKeyId != nil {
			return fmt.Sprintf("%016X", *s.IssuerKeyId)
		}
	}
	return "(unknown)"
}

// verifySSH checks an SSH signature (the SSHSIG format of OpenSSH's
// PROTOCOL.sshsig, as `git commit -S` with gpg.format=ssh writes it) in
// the "git" namespace against the trusted keys.
func (s *Snapshot) verifySSH(armored string, names []string, keys map[string][]byte) (string, error) {
	short := s.Commit[:12]
	sig, err := parseSSHSig(armored)
	if err != nil {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s has an unreadable SSH signature: %v", short, err)
	}
	if sig.namespace != "git" {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s is signed for the namespace %q, not \"git\"", short, sig.namespace)
	}
	signer, err := ssh.ParsePublicKey(sig.publicKey)
	if err != nil {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s has an SSH signature with an unreadable key: %v", short, err)
	}
	trusted := ""
	for _, name := range names {
		rest := keys[name]
		for len(bytes.TrimSpace(rest)) > 0 {
			k, _, _, r, err := ssh.ParseAuthorizedKey(rest)
			if err != nil {
				break
			}
			rest = r
			if bytes.Equal(k.Marshal(), signer.Marshal()) {
				trusted = name
			}
		}
	}
	if trusted == "" {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s is signed by SSH key %s, which is not one of the trusted keys (%s)",
			short, ssh.FingerprintSHA256(signer), strings.Join(names, ", "))
	}
	var body plumbing.MemoryObject
	if err := s.commit.EncodeWithoutSignature(&body); err != nil {
		return "", fmt.Errorf("encoding commit %s: %w", short, err)
	}
	r, _ := body.Reader()
	msg, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("encoding commit %s: %w", short, err)
	}
	var digest []byte
	switch sig.hash {
	case "sha512":
		d := sha512.Sum512(msg)
		digest = d[:]
	case "sha256":
		d := sha256.Sum256(msg)
		digest = d[:]
	default:
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s is signed with the unsupported hash %q", short, sig.hash)
	}
	signed := slices.Concat([]byte("SSHSIG"), sshString([]byte(sig.namespace)), sshString(sig.reserved), sshString([]byte(sig.hash)), sshString(digest))
	if err := signer.Verify(signed, sig.signature); err != nil {
		return "", outcome.Failf(ReasonUntrustedSignature, "commit %s has an SSH signature by %s that does not match the commit", short, trusted)
	}
	return fmt.Sprintf("%s (SSH key %s)", trusted, ssh.FingerprintSHA256(signer)), nil
}

type sshSig struct {
	publicKey []byte
	namespace string
	reserved  []byte
	hash      string
	signature *ssh.Signature
}

// parseSSHSig decodes an armored SSHSIG blob.
func parseSSHSig(armored string) (*sshSig, error) {
	block, _ := pem.Decode([]byte(armored))
	if block == nil || block.Type != "SSH SIGNATURE" {
		return nil, fmt.Errorf("not an armored SSH signature")
	}
	b := block.Bytes
	if !bytes.HasPrefix(b, []byte("SSHSIG")) || len(b) < 10 {
		return nil, fmt.Errorf("missing the SSHSIG preamble")
	}
	if v := binary.BigEndian.Uint32(b[6:10]); v != 1 {
		return nil, fmt.Errorf("unsupported version %d", v)
	}
	var w struct {
		PublicKey []byte
		Namespace string
		Reserved  []byte
		Hash      string
		Signature []byte
	}
	if err := ssh.Unmarshal(b[10:], &w); err != nil {
		return nil, err
	}
	sig := &ssh.Signature{}
	if err := ssh.Unmarshal(w.Signature, sig); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return &sshSig{publicKey: w.PublicKey, namespace: w.Namespace, reserved: w.Reserved, hash: w.Hash, signature: sig}, nil
}

func sshString(b []byte) []byte {
	out := binary.BigEndian.AppendUint32(nil, uint32(len(b)))
	return append(out, b...)
}
