// Package evidence keeps what Vigil's decisions rest on tamper-evident.
//
// An Approval counts only with an identity the API server vouched for: the
// admission webhook takes the user from the admission request, never from
// the body, and seals it together with the Approval's spec and the wait it
// answers, with an HMAC key only the controller holds. The controller opens
// the seal before it counts anything, so an Approval created while the
// webhook was not installed, or whose identity was written or changed by
// hand, counts for nothing.
package evidence

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// KeySize is the size of a sealing key in bytes.
const KeySize = 32

// maxIdentity bounds the identity annotation a seal is checked against.
const maxIdentity = 16 << 10

// MaxGroups bounds the groups an identity keeps; the webhook checks a
// step's groups against all of the user's groups before it seals.
const MaxGroups = 64

// TimeFormat is how an identity writes instants: microseconds, UTC.
const TimeFormat = "2006-01-02T15:04:05.000000Z07:00"

// Identity is who made an Approval, as the admission request said, when,
// and which wait of the Rollout it answers.
type Identity struct {
	// User is the requester's username.
	User string `json:"user"`
	// UID is the requester's UID, when the authenticator gives one.
	UID string `json:"uid,omitempty"`
	// Groups are the requester's groups (at most MaxGroups).
	Groups []string `json:"groups,omitempty"`
	// At is when the webhook admitted the Approval.
	At string `json:"at"`
	// Wait is when the wait the Approval answers began: the Rollout's
	// status.pendingApproval.waitingSince for an Approve, the current step's
	// start for a Reject. An Approval counts only for that wait.
	Wait string `json:"wait"`
}

// Time formats t as an identity does.
func Time(t time.Time) string { return t.UTC().Format(TimeFormat) }

// AdmittedAt is when the Approval was admitted.
func (id Identity) AdmittedAt() (time.Time, error) { return time.Parse(TimeFormat, id.At) }

// Key seals and opens identities. The zero Key seals nothing.
type Key struct {
	id     string
	secret []byte
}

// NewKey makes a Key of secret, which must hold KeySize bytes or more.
func NewKey(secret []byte) (Key, error) {
	if len(secret) < KeySize {
		return Key{}, fmt.Errorf("a sealing key needs at least %d bytes, not %d", KeySize, len(secret))
	}
	sum := sha256.Sum256(secret)
	return Key{id: hex.EncodeToString(sum[:4]), secret: bytes.Clone(secret)}, nil
}

// GenerateKey returns KeySize random bytes for a new key.
func GenerateKey() []byte {
	b := make([]byte, KeySize)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return b
}

// ID names the key without revealing it.
func (k Key) ID() string { return k.id }

// Why an Approval's identity does not count.
var (
	// ErrNotSealed: no identity or seal; the webhook did not admit it.
	ErrNotSealed = errors.New("it carries no identity sealed by Vigil's admission webhook (was it created while the webhook was not installed?), so it counts for nothing")
	// ErrBroken: the seal does not match the identity and spec.
	ErrBroken = errors.New("its identity or spec differs from what the admission webhook sealed, so it counts for nothing")
	// ErrOtherKey: sealed with a key this controller does not hold.
	ErrOtherKey = errors.New("it was sealed with a key this controller does not hold (was the sealing Secret replaced?), so it counts for nothing")
)

// sealed is exactly what a seal covers.
type sealed struct {
	Namespace string               `json:"namespace"`
	Spec      vigilv1.ApprovalSpec `json:"spec"`
	Identity  Identity             `json:"identity"`
}

func (k Key) mac(namespace string, spec vigilv1.ApprovalSpec, id Identity) (string, error) {
	b, err := json.Marshal(sealed{Namespace: namespace, Spec: spec, Identity: id})
	if err != nil {
		return "", err
	}
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte("vigil.dev/approval/v1\n"))
	m.Write(b)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)), nil
}

// Seal returns the annotations that bind id to the Approval's namespace
// and spec: the identity as JSON, and the seal.
func (k Key) Seal(namespace string, spec vigilv1.ApprovalSpec, id Identity) (identity, seal string, err error) {
	if k.secret == nil {
		return "", "", errors.New("no sealing key")
	}
	if len(id.Groups) > MaxGroups {
		id.Groups = id.Groups[:MaxGroups]
	}
	b, err := json.Marshal(id)
	if err != nil {
		return "", "", err
	}
	mac, err := k.mac(namespace, spec, id)
	if err != nil {
		return "", "", err
	}
	return string(b), "v1." + k.id + "." + mac, nil
}

// Open returns the identity sealed on a, or why it does not count.
func (k Key) Open(a *vigilv1.Approval) (Identity, error) {
	raw, seal := a.Annotations[vigilv1.AnnotationApprovalIdentity], a.Annotations[vigilv1.AnnotationApprovalSeal]
	if raw == "" || seal == "" {
		return Identity{}, ErrNotSealed
	}
	parts := strings.Split(seal, ".")
	if len(parts) != 3 || parts[0] != "v1" || len(raw) > maxIdentity {
		return Identity{}, ErrBroken
	}
	if parts[1] != k.id {
		return Identity{}, ErrOtherKey
	}
	var id Identity
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&id); err != nil {
		return Identity{}, ErrBroken
	}
	want, err := k.mac(a.Namespace, a.Spec, id)
	if err != nil || !hmac.Equal([]byte(want), []byte(parts[2])) {
		return Identity{}, ErrBroken
	}
	if _, err := id.AdmittedAt(); err != nil || id.User == "" {
		return Identity{}, ErrBroken
	}
	return id, nil
}
