package rollout

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/trustpolicy"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/provenance"
)

// +kubebuilder:rbac:groups=vigil.dev,resources=trustpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=gitsyncs,verbs=get;list;watch

const (
	// failedRecheck is how long a refused revision waits before its images
	// are looked at again (a signature may be pushed after the image).
	failedRecheck = 5 * time.Minute
)

// verifyBackoff spaces the attempts of a verification whose outcome was
// Unknown: 2s, doubling, at most 5m apart; it never gives up, since a
// revision that is not verified gets no pods either way.
var verifyBackoff = outcome.Backoff{Initial: 2 * time.Second, Max: 5 * time.Minute, Budget: -1}

// hold is why the revision of the template may not have pods yet.
type hold struct {
	phase   vigilv1.RolloutPhase
	stalled *stall
	message string
}

// gate runs the provenance gate for the template's revision. It returns
// nil when the revision may have pods: it passed its TrustPolicy (or the
// policy is in Audit mode), or it already runs. The verdict is kept in
// status.verification; a verdict under the same policy hash is reused, so
// a pass is not verified again and a refusal or an Unknown is retried only
// when its wait is over.
func (r *Reconciler) gate(ctx context.Context, s *scope) (*hold, error) {
	ro := s.rollout
	conds := &ro.Status.Conditions.Conditions
	if ro.Spec.Provenance == nil {
		meta.RemoveStatusCondition(conds, vigilv1.ConditionVerified)
		ro.Status.Verification = nil
		return nil, nil
	}
	name := ro.Spec.Provenance.PolicyRef.Name
	tp := &vigilv1.TrustPolicy{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ro.Namespace, Name: name}, tp); err != nil {
		if apierrors.IsNotFound(err) {
			return r.notReady(s, fmt.Sprintf("TrustPolicy %s does not exist; no revision runs unverified", name)), nil
		}
		return nil, fmt.Errorf("reading TrustPolicy %s: %w", name, err)
	}
	running := s.set(s.revision) != nil
	v := ro.Status.Verification
	// A pass holds for later commits too (history only grows); a refusal
	// may not: the commit that now applies the Rollout may contain the
	// image's source commit.
	sameCommit := v != nil && (v.Result == vigilv1.VerificationPassed || v.AppliedRevision == ro.Annotations[gitops.RevisionAnnotation])
	if v != nil && v.Revision == s.revision && tp.Status.PolicyHash != "" && v.PolicyHash == tp.Status.PolicyHash && sameCommit {
		if h, again := r.reuse(s, v, running); !again {
			return h, nil
		}
	}
	policy, err := trustpolicy.Load(ctx, r.APIReader, tp)
	if err != nil && !outcome.IsUnknown(err) {
		return r.notReady(s, fmt.Sprintf("TrustPolicy %s is not usable: %v", name, err)), nil
	}
	if err != nil {
		return nil, err
	}
	nv := r.verifyRevision(ctx, s, tp, policy)
	if v != nil && v.Revision == nv.Revision && v.Result == vigilv1.VerificationUnknown && nv.Result == vigilv1.VerificationUnknown {
		nv.UnknownAttempts = v.UnknownAttempts + 1
	}
	ro.Status.Verification = nv
	r.announce(s, v, nv)
	h, _ := r.reuse(s, nv, running)
	return h, nil
}

// reuse applies a recorded verdict: it sets the Verified condition and the
// pinned images, and returns a hold unless the revision is admitted (it
// passed, or the policy is in Audit mode) or already runs. again says the
// verdict's wait is over and the images are to be verified anew; until
// then the Rollout is woken when it ends.
func (r *Reconciler) reuse(s *scope, v *vigilv1.RevisionVerification, running bool) (h *hold, again bool) {
	conds := &s.rollout.Status.Conditions.Conditions
	set := func(status metav1.ConditionStatus, reason string) {
		meta.SetStatusCondition(conds, metav1.Condition{Type: vigilv1.ConditionVerified, Status: status, Reason: reason,
			Message: v.Message, ObservedGeneration: s.rollout.Generation})
	}
	s.pinned = map[string]string{}
	for _, im := range v.Images {
		if im.Pinned != "" {
			s.pinned[im.Image] = im.Pinned
		}
	}
	if v.Result == vigilv1.VerificationPassed {
		set(metav1.ConditionTrue, vigilv1.ReasonVerified)
		return nil, false
	}
	wait, status := failedRecheck, metav1.ConditionFalse
	h = &hold{phase: vigilv1.RolloutPhaseBlocked, stalled: &stall{v.Reason, v.Message},
		message: fmt.Sprintf("Revision %s is blocked: %s", v.Revision, v.Message)}
	if v.Result == vigilv1.VerificationUnknown {
		wait, status = verifyBackoff.Delay(int(v.UnknownAttempts)+1), metav1.ConditionUnknown
		h = &hold{phase: vigilv1.RolloutPhaseVerifying, message: fmt.Sprintf("Verifying revision %s: %s; retrying", v.Revision, v.Message)}
	}
	set(status, v.Reason)
	left := wait - s.now.Sub(v.Time.Time)
	if left <= 0 {
		return nil, true
	}
	s.wakeIn(left)
	if v.Audit || running {
		return nil, false
	}
	return h, false
}

func (r *Reconciler) notReady(s *scope, msg string) *hold {
	meta.SetStatusCondition(&s.rollout.Status.Conditions.Conditions, metav1.Condition{Type: vigilv1.ConditionVerified,
		Status: metav1.ConditionUnknown, Reason: vigilv1.ReasonPolicyNotFound, Message: msg, ObservedGeneration: s.rollout.Generation})
	s.wakeIn(30 * time.Second)
	if s.set(s.revision) != nil {
		return nil
	}
	return &hold{phase: vigilv1.RolloutPhaseBlocked, stalled: &stall{vigilv1.ReasonPolicyNotFound, msg}, message: msg}
}

// verifyRevision verifies every image of the template and combines the
// verdicts: the first Failed image decides, then the first Unknown.
func (r *Reconciler) verifyRevision(ctx context.Context, s *scope, tp *vigilv1.TrustPolicy, policy *provenance.Policy) *vigilv1.RevisionVerification {
	ro := s.rollout
	out := &vigilv1.RevisionVerification{Revision: s.revision, PolicyHash: policy.Hash(), Result: vigilv1.VerificationPassed,
		Reason: vigilv1.ReasonVerified, Time: metav1.NewTime(s.now), Audit: trustpolicy.Mode(tp) == vigilv1.TrustPolicyAudit,
		AppliedRevision: ro.Annotations[gitops.RevisionAnnotation]}
	applied := r.applied(ctx, ro)
	var msgs []string
	for _, image := range templateImages(&ro.Spec.Template) {
		start := r.Clock.Now()
		v := r.Verifier.Verify(ctx, provenance.Request{Image: image, Policy: policy, Applied: applied})
		took := r.Clock.Since(start)
		s.metric(func() { observeVerdict(v, took) })
		result := verificationResults[v.Result]
		out.Images = append(out.Images, vigilv1.VerifiedImage{Image: image, Pinned: v.Pinned, Result: result,
			Signer: v.Signer, Builder: v.Builder, SourceRepository: v.SourceRepository, SourceCommit: v.SourceCommit})
		switch {
		case result == vigilv1.VerificationFailed && out.Result != vigilv1.VerificationFailed,
			result == vigilv1.VerificationUnknown && out.Result == vigilv1.VerificationPassed:
			out.Result, out.Reason = result, v.Reason
			msgs = append([]string{image + ": " + v.Message}, msgs...)
		default:
			msgs = append(msgs, image+": "+v.Message)
		}
	}
	out.Message = outcome.Shorten(strings.Join(msgs, "; "), 2048)
	return out
}

// announce records Events for a new verdict: a Warning for a refusal or
// an Audit violation, once per revision and policy.
func (r *Reconciler) announce(s *scope, before, v *vigilv1.RevisionVerification) {
	same := before != nil && before.Revision == v.Revision && before.PolicyHash == v.PolicyHash && before.Result == v.Result
	if same {
		return
	}
	switch {
	case v.Result == vigilv1.VerificationPassed:
		s.record(false, vigilv1.ReasonVerified, "Verify", "Revision %s verified: %s", v.Revision, v.Message)
	case v.Audit:
		s.metric(auditViolations.Inc)
		s.record(true, vigilv1.ReasonAuditViolation, "Verify", "Revision %s would be blocked (%s), but the TrustPolicy is in Audit mode: %s", v.Revision, v.Reason, v.Message)
	case v.Result == vigilv1.VerificationFailed:
		s.record(true, vigilv1.ReasonVerificationFailed, "Verify", "Revision %s is blocked (%s): %s", v.Revision, v.Reason, v.Message)
	}
}

// applied is what the GitSync that applied the Rollout applied, when one
// did: the commit the Rollout itself was applied from, which the GitSync's
// status names only once the whole commit is applied.
func (r *Reconciler) applied(ctx context.Context, ro *vigilv1.Rollout) *provenance.Applied {
	owner := ro.Annotations[gitops.OwnerAnnotation]
	ns, name, ok := strings.Cut(owner, "/")
	if !ok || ns != ro.Namespace {
		return nil
	}
	gs := &vigilv1.GitSync{}
	if err := r.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, gs); err != nil {
		return nil
	}
	rev := ro.Annotations[gitops.RevisionAnnotation]
	if rev == "" {
		rev = gs.Status.LastAppliedRevision
	}
	if rev == "" {
		return nil
	}
	ref := ""
	switch {
	case gs.Spec.Ref.Branch != "":
		ref = "refs/heads/" + gs.Spec.Ref.Branch
	case gs.Spec.Ref.Tag != "":
		ref = "refs/tags/" + gs.Spec.Ref.Tag
	}
	return &provenance.Applied{URL: gs.Spec.URL, Ref: ref, Revision: rev}
}

// templateImages lists the template's images once each, init containers first.
func templateImages(t *corev1.PodTemplateSpec) []string {
	var out []string
	seen := map[string]bool{}
	for _, cs := range [][]corev1.Container{t.Spec.InitContainers, t.Spec.Containers} {
		for _, c := range cs {
			if !seen[c.Image] {
				seen[c.Image] = true
				out = append(out, c.Image)
			}
		}
	}
	return out
}

// verificationResults names each outcome of a verification as the API does.
var verificationResults = map[outcome.Result]vigilv1.VerificationResult{
	outcome.Success: vigilv1.VerificationPassed,
	outcome.Failure: vigilv1.VerificationFailed,
	outcome.Unknown: vigilv1.VerificationUnknown,
}
