package rollout

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/hack/gittest"
	"github.com/vigil-dev/vigil/hack/sigtest"
	"github.com/vigil-dev/vigil/provenance"
)

const testBuilder = "https://ci.vigil.dev/builders/release@v1"

// supplyChain is a registry, a release key and an application repository
// with one reviewed commit, and a TrustPolicy that requires all three.
type supplyChain struct {
	t        testing.TB
	ns       string
	reg      *sigtest.Registry
	key      *sigtest.Key
	repoURL  string
	initial  string // the commit before reviewed
	reviewed string
	tags     int
}

// startGated starts the controllers over a fresh namespace whose pods turn
// ready, with a supply chain and its TrustPolicy in it.
func startGated(t *testing.T, mode vigilv1.TrustPolicyMode) *supplyChain {
	ns := newNamespace(t)
	kubelet(t, ns, nil)
	startManager(t, nil)
	return newSupplyChainTB(t, ns, mode)
}

func newSupplyChainTB(t testing.TB, ns string, mode vigilv1.TrustPolicyMode) *supplyChain {
	sc := &supplyChain{t: t, ns: ns, reg: sigtest.NewRegistry(t, true), key: sigtest.NewKey(t)}
	repo := gittest.NewRepo(t, "app.git")
	repo.Write("README.md", "app\n")
	sc.initial = repo.Commit("initial")
	repo.Write("main.go", "package main\n")
	sc.reviewed = repo.Commit("reviewed")
	sc.repoURL = repo.Daemon()
	ctx := context.Background()
	g := NewWithT(t)
	g.Expect(k8s.Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release-key"},
		Data: map[string][]byte{"cosign.pub": sc.key.PublicPEM}})).To(Succeed())
	g.Expect(k8s.Create(ctx, &vigilv1.TrustPolicy{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "release"},
		Spec: vigilv1.TrustPolicySpec{
			Mode: mode,
			Authorities: []vigilv1.Authority{{Name: "release-key", Key: &vigilv1.KeyAuthority{
				SecretRef: vigilv1.SecretKeyReference{Name: "release-key", Key: "cosign.pub"}}}},
			Provenance: &vigilv1.ProvenanceRequirement{
				BuilderIDs:         []string{testBuilder},
				SourceRepositories: []vigilv1.SourceRepository{{URL: sc.repoURL, ProtectedRefs: []string{"refs/heads/main"}}},
			},
		},
	})).To(Succeed())
	return sc
}

// image pushes a new image and returns it by tag, with its digest.
func (sc *supplyChain) image() (string, name.Digest) {
	sc.tags++
	tag := "v" + string(rune('0'+sc.tags))
	return sc.reg.Host + "/app:" + tag, sc.reg.Push(sc.t, "app", tag)
}

// release signs d and attests it was built from the reviewed commit.
func (sc *supplyChain) release(d name.Digest) {
	sigtest.Sign(sc.t, sc.key, d)
	sigtest.Attest(sc.t, sc.key, d, d.DigestStr(), sigtest.SLSA(testBuilder, sc.repoURL, sc.reviewed))
}

func gated(ro *vigilv1.Rollout) *vigilv1.Rollout {
	ro.Spec.Provenance = &vigilv1.ProvenanceGate{PolicyRef: vigilv1.LocalObjectReference{Name: "release"}}
	return ro
}

func verified(ro *vigilv1.Rollout) *metav1.Condition {
	return meta.FindStatusCondition(ro.Status.Conditions.Conditions, vigilv1.ConditionVerified)
}

func TestAVerifiedRevisionRunsByDigestAndAnUnsignedOneGetsNoPods(t *testing.T) {
	g := NewWithT(t)
	sc := startGated(t, vigilv1.TrustPolicyEnforce)
	ns := sc.ns
	tag1, d1 := sc.image()
	sc.release(d1)

	ro := gated(newRollout(ns, "shop", 2, tag1, weightStep(50), approvalStep()))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	v1 := waitPromoted(t, ro, 20*time.Second)
	g.Expect(verified(v1)).NotTo(BeNil())
	g.Expect(verified(v1).Status).To(Equal(metav1.ConditionTrue))
	ver := v1.Status.Verification
	g.Expect(ver.Result).To(Equal(vigilv1.VerificationPassed))
	g.Expect(ver.Images).To(HaveLen(1))
	g.Expect(ver.Images[0].Signer).To(Equal("key release-key"))
	g.Expect(ver.Images[0].Builder).To(Equal(testBuilder))
	g.Expect(ver.Images[0].SourceCommit).To(Equal(sc.reviewed))
	rs := replicaSets(g, ro)[v1.Status.StableRevision]
	g.Expect(rs.Spec.Template.Spec.Containers[0].Image).To(Equal(d1.String()), "the ReplicaSet runs the digest, not the tag")

	tag2, _ := sc.image() // pushed, never signed
	newImage(t, ro, tag2)
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		c := verified(cur)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(c.Reason).To(Equal(string(provenance.ReasonUnsigned)))
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseBlocked))
		g.Expect(cur.Status.Message).To(ContainSubstring("no signature of sha256:"))
		g.Expect(meta.IsStatusConditionTrue(cur.Status.Conditions.Conditions, vigilv1.ConditionStalled)).To(BeTrue())
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Consistently(func(g Gomega) {
		g.Expect(replicaSets(g, ro)).To(HaveLen(1), "no ReplicaSet for the unsigned revision")
	}, 2*time.Second, 100*time.Millisecond).Should(Succeed())
	var warned bool
	for _, e := range rolloutEvents(g, ro) {
		warned = warned || e.Type == corev1.EventTypeWarning && e.Reason == vigilv1.ReasonVerificationFailed && strings.Contains(e.Message, "Unsigned")
	}
	g.Expect(warned).To(BeTrue(), "a Warning Event says why the revision is blocked")
}

func TestAStalledRegistryIsUnknownWithNoPodsUntilItRecovers(t *testing.T) {
	g := NewWithT(t)
	sc := startGated(t, vigilv1.TrustPolicyEnforce)
	ns := sc.ns
	tag, d := sc.image()
	sc.release(d)
	sc.reg.Stall(true)

	ro := gated(newRollout(ns, "cart", 1, tag, weightStep(50)))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		c := verified(cur)
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Status).To(Equal(metav1.ConditionUnknown))
		g.Expect(c.Reason).To(Equal(string(provenance.ReasonRegistryUnavailable)))
		g.Expect(cur.Status.Phase).To(Equal(vigilv1.RolloutPhaseVerifying))
		g.Expect(cur.Status.Verification.UnknownAttempts).To(BeNumerically(">=", 1), "Unknown is retried")
	}, 30*time.Second, 50*time.Millisecond).Should(Succeed())
	g.Expect(replicaSets(g, ro)).To(BeEmpty(), "no pods while the outcome is Unknown")
	g.Expect(meta.IsStatusConditionTrue(get(g, ro).Status.Conditions.Conditions, vigilv1.ConditionStalled)).To(BeFalse(),
		"Unknown is not a refusal")

	sc.reg.Stall(false)
	promoted := waitPromoted(t, ro, 40*time.Second)
	g.Expect(verified(promoted).Status).To(Equal(metav1.ConditionTrue))
	g.Expect(replicaSets(g, ro)[promoted.Status.StableRevision].Spec.Template.Spec.Containers[0].Image).To(Equal(d.String()))
}

func TestAuditModeLetsAnUnsignedImageThroughWithAWarningAndAMetric(t *testing.T) {
	g := NewWithT(t)
	sc := startGated(t, vigilv1.TrustPolicyAudit)
	ns := sc.ns
	tag, d := sc.image()
	before := testutil.ToFloat64(auditViolations)

	ro := gated(newRollout(ns, "audit", 1, tag, weightStep(50)))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	cur := waitPromoted(t, ro, 20*time.Second)
	g.Expect(verified(cur).Status).To(Equal(metav1.ConditionFalse))
	g.Expect(verified(cur).Reason).To(Equal(string(provenance.ReasonUnsigned)))
	g.Expect(cur.Status.Verification.Audit).To(BeTrue())
	g.Expect(replicaSets(g, ro)[cur.Status.StableRevision].Spec.Template.Spec.Containers[0].Image).To(Equal(d.String()),
		"the digest is pinned in Audit mode too")
	g.Expect(testutil.ToFloat64(auditViolations) - before).To(BeNumerically("==", 1))
	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) { g.Expect(eventReasons(g, ro)).To(ContainElement(vigilv1.ReasonAuditViolation)) }, 10*time.Second, 50*time.Millisecond).Should(Succeed())
}

func TestATrustPolicyChangeVerifiesTheRunningRevisionAgain(t *testing.T) {
	g := NewWithT(t)
	sc := startGated(t, vigilv1.TrustPolicyEnforce)
	ns := sc.ns
	tag, d := sc.image()
	sc.release(d)
	ro := gated(newRollout(ns, "again", 1, tag, weightStep(50)))
	g.Expect(k8s.Create(context.Background(), ro)).To(Succeed())
	first := waitPromoted(t, ro, 20*time.Second).Status.Verification

	// The release key is rotated: the running revision no longer verifies.
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: "release-key"}, secret)).To(Succeed())
	secret.Data["cosign.pub"] = sigtest.NewKey(t).PublicPEM
	g.Expect(k8s.Update(context.Background(), secret)).To(Succeed())
	g.Eventually(func(g Gomega) {
		cur := get(g, ro)
		g.Expect(cur.Status.Verification.PolicyHash).NotTo(Equal(first.PolicyHash))
		g.Expect(verified(cur).Reason).To(Equal(string(provenance.ReasonSignatureUntrusted)))
	}, 20*time.Second, 100*time.Millisecond).Should(Succeed())
	// Events are sent after the status patch, by the recorder's own goroutine.
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, ro)).To(ContainElement(vigilv1.ReasonVerificationFailed))
	}, 10*time.Second, 100*time.Millisecond).Should(Succeed())
	g.Expect(replicaSets(g, ro)[first.Revision].Spec.Replicas).To(Equal(ptr.To(int32(1))), "running pods are left alone")
}

// TestTheSameRepositoryCheckUsesTheCommitTheRolloutWasAppliedFrom: a
// GitSync names a commit in its status only once all of it is applied,
// which is after it created the Rollout; the gate checks against the
// commit the Rollout itself carries (vigil.dev/gitsync-revision), and a
// refusal is looked at again as soon as another commit applies the Rollout.
func TestTheSameRepositoryCheckUsesTheCommitTheRolloutWasAppliedFrom(t *testing.T) {
	g := NewWithT(t)
	ctx := context.Background()
	sc := startGated(t, vigilv1.TrustPolicyEnforce)
	gs := &vigilv1.GitSync{
		ObjectMeta: metav1.ObjectMeta{Namespace: sc.ns, Name: "manifests"},
		Spec:       vigilv1.GitSyncSpec{URL: sc.repoURL, Ref: vigilv1.GitRef{Branch: "main"}, Path: "deploy"},
	}
	g.Expect(k8s.Create(ctx, gs)).To(Succeed())
	gs.Status.LastAppliedRevision = sc.initial // still the commit before, mid-apply
	g.Expect(k8s.Status().Update(ctx, gs)).To(Succeed())
	tag, d := sc.image()
	sc.release(d) // built from sc.reviewed
	appliedFrom := func(name, commit string) *vigilv1.Rollout {
		ro := gated(newRollout(sc.ns, name, 2, tag, weightStep(50)))
		ro.Annotations = map[string]string{gitops.OwnerAnnotation: sc.ns + "/manifests", gitops.RevisionAnnotation: commit}
		g.Expect(k8s.Create(ctx, ro)).To(Succeed())
		return ro
	}
	fromReviewed := appliedFrom("from-reviewed", sc.reviewed)
	fromInitial := appliedFrom("from-initial", sc.initial)

	v := waitPromoted(t, fromReviewed, 20*time.Second)
	g.Expect(v.Status.Verification.AppliedRevision).To(Equal(sc.reviewed))
	g.Eventually(func(g Gomega) {
		c := verified(get(g, fromInitial))
		g.Expect(c).NotTo(BeNil())
		g.Expect(c.Reason).To(Equal(string(provenance.ReasonCommitNotApplied)))
	}, 20*time.Second, 50*time.Millisecond).Should(Succeed(), "the annotation decides, not the GitSync's status")

	// The next commit applies the same Rollout: verified again at once,
	// not after the five minutes a refusal otherwise waits.
	cur := get(g, fromInitial)
	cur.Annotations[gitops.RevisionAnnotation] = sc.reviewed
	g.Expect(k8s.Update(ctx, cur)).To(Succeed())
	waitPromoted(t, fromInitial, 20*time.Second)
}
