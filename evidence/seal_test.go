package evidence

import (
	"errors"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

func key(t testing.TB, b byte) Key {
	t.Helper()
	secret := make([]byte, KeySize)
	for i := range secret {
		secret[i] = b
	}
	k, err := NewKey(secret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func sealedApproval(t testing.TB, k Key) *vigilv1.Approval {
	t.Helper()
	a := &vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "ship-it"},
		Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "web"}, Revision: "abc", Step: 2,
			Decision: vigilv1.ApprovalApprove, Scope: vigilv1.ApprovalScopeStep, Reason: "looks fine"},
	}
	at := time.Date(2026, 12, 2, 7, 0, 0, 123456000, time.UTC)
	id := Identity{User: "alice", Groups: []string{"sre", "system:authenticated"}, At: Time(at), Wait: Time(at.Add(-time.Minute))}
	raw, seal, err := k.Seal(a.Namespace, a.Spec, id)
	if err != nil {
		t.Fatal(err)
	}
	a.Annotations = map[string]string{vigilv1.AnnotationApprovalIdentity: raw, vigilv1.AnnotationApprovalSeal: seal}
	return a
}

func TestASealOpensOnlyOnWhatWasSealed(t *testing.T) {
	k := key(t, 1)
	a := sealedApproval(t, k)
	id, err := k.Open(a)
	if err != nil {
		t.Fatalf("opening an untouched seal: %v", err)
	}
	if id.User != "alice" || len(id.Groups) != 2 || id.Wait != "2026-12-02T06:59:00.123456Z" {
		t.Fatalf("opened %+v", id)
	}
	cases := []struct {
		name   string
		change func(a *vigilv1.Approval)
		want   error
	}{
		{"no annotations (created without the webhook)", func(a *vigilv1.Approval) { a.Annotations = nil }, ErrNotSealed},
		{"an identity without a seal", func(a *vigilv1.Approval) { delete(a.Annotations, vigilv1.AnnotationApprovalSeal) }, ErrNotSealed},
		{"another user written in", func(a *vigilv1.Approval) {
			a.Annotations[vigilv1.AnnotationApprovalIdentity] = strings.Replace(a.Annotations[vigilv1.AnnotationApprovalIdentity], `"alice"`, `"bob"`, 1)
		}, ErrBroken},
		{"a group added", func(a *vigilv1.Approval) {
			a.Annotations[vigilv1.AnnotationApprovalIdentity] = strings.Replace(a.Annotations[vigilv1.AnnotationApprovalIdentity], `"sre"`, `"sre","admins"`, 1)
		}, ErrBroken},
		{"another wait", func(a *vigilv1.Approval) {
			a.Annotations[vigilv1.AnnotationApprovalIdentity] = strings.Replace(a.Annotations[vigilv1.AnnotationApprovalIdentity], "06:59:00", "07:59:00", 1)
		}, ErrBroken},
		{"an unknown field", func(a *vigilv1.Approval) {
			a.Annotations[vigilv1.AnnotationApprovalIdentity] = strings.Replace(a.Annotations[vigilv1.AnnotationApprovalIdentity], "{", `{"admin":true,`, 1)
		}, ErrBroken},
		{"not JSON", func(a *vigilv1.Approval) { a.Annotations[vigilv1.AnnotationApprovalIdentity] = "alice" }, ErrBroken},
		{"another step", func(a *vigilv1.Approval) { a.Spec.Step = 3 }, ErrBroken},
		{"another revision", func(a *vigilv1.Approval) { a.Spec.Revision = "def" }, ErrBroken},
		{"scope widened", func(a *vigilv1.Approval) { a.Spec.Scope = vigilv1.ApprovalScopeFull }, ErrBroken},
		{"another Rollout", func(a *vigilv1.Approval) { a.Spec.RolloutRef.Name = "api" }, ErrBroken},
		{"another namespace", func(a *vigilv1.Approval) { a.Namespace = "team-b" }, ErrBroken},
		{"a seal cut short", func(a *vigilv1.Approval) {
			s := a.Annotations[vigilv1.AnnotationApprovalSeal]
			a.Annotations[vigilv1.AnnotationApprovalSeal] = s[:len(s)-2]
		}, ErrBroken},
		{"a seal of another format", func(a *vigilv1.Approval) { a.Annotations[vigilv1.AnnotationApprovalSeal] = "v2.x.y" }, ErrBroken},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := sealedApproval(t, k)
			tc.change(a)
			if _, err := k.Open(a); !errors.Is(err, tc.want) {
				t.Fatalf("Open = %v, want %v", err, tc.want)
			}
		})
	}
	if _, err := key(t, 2).Open(sealedApproval(t, k)); !errors.Is(err, ErrOtherKey) {
		t.Fatalf("opening with another key: %v, want %v", err, ErrOtherKey)
	}
	forged := sealedApproval(t, key(t, 2)) // sealed by someone holding another key, relabelled with ours
	forged.Annotations[vigilv1.AnnotationApprovalSeal] = strings.Replace(forged.Annotations[vigilv1.AnnotationApprovalSeal], key(t, 2).ID(), k.ID(), 1)
	if _, err := k.Open(forged); !errors.Is(err, ErrBroken) {
		t.Fatalf("a forged seal: %v, want %v", err, ErrBroken)
	}
}

func TestAShortKeyIsRefused(t *testing.T) {
	if _, err := NewKey(make([]byte, KeySize-1)); err == nil {
		t.Fatal("a 31-byte key was accepted")
	}
	if _, _, err := (Key{}).Seal("ns", vigilv1.ApprovalSpec{}, Identity{User: "a"}); err == nil {
		t.Fatal("the zero Key sealed")
	}
}

// FuzzOpen feeds Open identities and seals it must refuse without panicking
// unless they are exactly what it sealed.
func FuzzOpen(f *testing.F) {
	k := key(f, 1)
	a := sealedApproval(f, k)
	f.Add(a.Annotations[vigilv1.AnnotationApprovalIdentity], a.Annotations[vigilv1.AnnotationApprovalSeal])
	f.Add(`{"user":"x","at":"bad","wait":""}`, "v1."+k.ID()+".AAAA")
	f.Add("", "")
	f.Fuzz(func(t *testing.T, identity, seal string) {
		b := sealedApproval(t, k)
		same := identity == b.Annotations[vigilv1.AnnotationApprovalIdentity] && seal == b.Annotations[vigilv1.AnnotationApprovalSeal]
		b.Annotations = map[string]string{vigilv1.AnnotationApprovalIdentity: identity, vigilv1.AnnotationApprovalSeal: seal}
		_, err := k.Open(b)
		if same && err != nil {
			t.Fatalf("the sealed identity did not open: %v", err)
		}
	})
}
