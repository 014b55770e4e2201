// Package approval is Vigil's admission webhook for Approvals. It binds an
// Approval to the person who made it: on creation it checks that the
// Rollout exists and waits for exactly this decision, that the requester
// may use the verb approve (or reject) on that Rollout and is among the
// step's approvers, and then seals the requester's identity, taken from
// the admission request and never from the body, into the Approval (see
// package evidence). On update it keeps the seal unchanged and lets only
// the controller write an Approval's status. It also lets only the
// controller write ReleaseRecords.
package approval

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"gomodules.xyz/jsonpatch/v2"
	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// Paths the webhook server serves; config/webhook names them.
const (
	// AdmitPath checks and seals every Approval created (mutating).
	AdmitPath = "/approvals/admit"
	// GuardPath checks every update of an Approval or its status (validating).
	GuardPath = "/approvals/guard"
)

// Why an admission request was refused: the reason label of
// vigil_approval_admission_total.
const (
	DeniedRolloutNotFound   = "RolloutNotFound"
	DeniedNotWaiting        = "NotWaiting"
	DeniedNotPermitted      = "NotPermitted"
	DeniedNotAnApprover     = "NotAnApprover"
	DeniedFullNotAllowed    = "FullNotAllowed"
	DeniedIdentityImmutable = "IdentityImmutable"
	DeniedStatusWriter      = "NotTheController"
	DeniedMalformed         = "Malformed"
	// admitted and errored are the other results.
	admitted = "Admitted"
	errored  = "Unknown"
)

// +kubebuilder:rbac:groups=authorization.k8s.io,resources=subjectaccessreviews,verbs=create
// +kubebuilder:rbac:groups=vigil.dev,resources=rollouts,verbs=get

// Admission serves the webhook.
type Admission struct {
	// Reader reads Rollouts from the API server, uncached: an Approval is
	// checked against the wait the Rollout is in now.
	Reader client.Reader
	// Client creates SubjectAccessReviews.
	Client client.Client
	// Key seals identities; the Rollout controller opens them with it.
	Key proof.Key
	// Controller is the controller's own username, the only one that may
	// write an Approval's status.
	Controller string
	Clock      clock.PassiveClock

	decoder admission.Decoder
}

// Register adds the webhook's handlers to srv.
func (w *Admission) Register(srv webhook.Server, scheme *runtime.Scheme) {
	w.decoder = admission.NewDecoder(scheme)
	if w.Clock == nil {
		w.Clock = clock.RealClock{}
	}
	srv.Register(AdmitPath, &webhook.Admission{Handler: admission.HandlerFunc(w.admit)})
	srv.Register(GuardPath, &webhook.Admission{Handler: admission.HandlerFunc(w.guard)})
	srv.Register(RecordsPath, &webhook.Admission{Handler: admission.HandlerFunc(w.guardRecords)})
}

// refusal is a denial with the reason it is counted under.
type refusal struct{ reason, message string }

func (w *Admission) admit(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Create {
		return admission.Allowed("")
	}
	a := &vigilv1.Approval{}
	if err := w.decoder.Decode(req, a); err != nil {
		return count(admission.Errored(http.StatusBadRequest, err), DeniedMalformed)
	}
	a.Namespace = req.Namespace
	ro := &vigilv1.Rollout{}
	err := w.Reader.Get(ctx, types.NamespacedName{Namespace: req.Namespace, Name: a.Spec.RolloutRef.Name}, ro)
	if apierrors.IsNotFound(err) {
		return deny(refusal{DeniedRolloutNotFound, fmt.Sprintf("Rollout %q does not exist in namespace %q; an Approval names a Rollout that waits for it", a.Spec.RolloutRef.Name, req.Namespace)})
	}
	if err != nil {
		return count(admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("reading Rollout %s: %w", a.Spec.RolloutRef.Name, err)), errored)
	}
	wait, why := proof.WaitOf(ro, a.Spec.Decision)
	if why != "" {
		return deny(refusal{DeniedNotWaiting, why})
	}
	if !wait.Names(a.Spec) {
		return deny(refusal{DeniedNotWaiting, fmt.Sprintf("Rollout %s waits for a decision on %s; this %s names revision %s at step %d (kubectl vigil fills both in from the Rollout's status)",
			ro.Name, wait, a.Spec.Decision, a.Spec.Revision, a.Spec.Step)})
	}
	verb := verbOf(a.Spec.Decision)
	ok, err := w.permitted(ctx, req, ro.Name, verb)
	if err != nil {
		return count(admission.Errored(http.StatusServiceUnavailable, fmt.Errorf("asking the API server whether %s may %s: %w", req.UserInfo.Username, verb, err)), errored)
	}
	if !ok {
		return deny(refusal{DeniedNotPermitted, fmt.Sprintf("%s may not %s Rollout %s: RBAC grants them no verb %q on rollouts.vigil.dev %q in namespace %q (a platform admin can bind the ClusterRole vigil-approver)",
			req.UserInfo.Username, verb, ro.Name, verb, ro.Name, req.Namespace)})
	}
	if a.Spec.Decision == vigilv1.ApprovalApprove {
		if r := eligible(ro, wait, a.Spec.Scope, req.UserInfo); r != nil {
			return deny(*r)
		}
	}
	return w.seal(a, wait, req.UserInfo)
}

// seal stamps the requester's identity and the wait it answers on a.
func (w *Admission) seal(a *vigilv1.Approval, wait proof.Wait, user authenticationv1.UserInfo) admission.Response {
	id := proof.Identity{User: user.Username, UID: user.UID, Groups: user.Groups, At: proof.Time(w.Clock.Now()), Wait: wait.Since}
	raw, seal, err := w.Key.Seal(a.Namespace, a.Spec, id)
	if err != nil {
		return count(admission.Errored(http.StatusInternalServerError, fmt.Errorf("sealing the Approval: %w", err)), errored)
	}
	stamp := map[string]string{vigilv1.AnnotationApprovalIdentity: raw, vigilv1.AnnotationApprovalSeal: seal}
	var ops []jsonpatch.JsonPatchOperation
	if len(a.Annotations) == 0 {
		ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations", stamp))
	} else {
		for _, k := range []string{vigilv1.AnnotationApprovalIdentity, vigilv1.AnnotationApprovalSeal} {
			ops = append(ops, jsonpatch.NewOperation("add", "/metadata/annotations/"+strings.ReplaceAll(k, "/", "~1"), stamp[k]))
		}
	}
	return count(admission.Patched(fmt.Sprintf("%s of %s by %s", a.Spec.Decision, wait, user.Username), ops...), admitted)
}

func verbOf(d vigilv1.ApprovalDecision) string {
	if d == vigilv1.ApprovalReject {
		return "reject"
	}
	return "approve"
}

// permitted asks the API server whether the requester may use verb on the
// Rollout named rollout, with a SubjectAccessReview.
func (w *Admission) permitted(ctx context.Context, req admission.Request, rollout, verb string) (bool, error) {
	u := req.UserInfo
	extra := make(map[string]authorizationv1.ExtraValue, len(u.Extra))
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Namespace: req.Namespace, Verb: verb, Group: vigilv1.GroupVersion.Group, Resource: "rollouts", Name: rollout,
		},
	}}
	if err := w.Client.Create(ctx, sar); err != nil {
		return false, err
	}
	return sar.Status.Allowed, nil
}

// eligible checks an Approve against the users and groups of the steps it
// passes: the step it answers, and with scope Full every later step that
// waits for people. Only an approval step's wait may be skipped with Full.
func eligible(ro *vigilv1.Rollout, wait proof.Wait, scope vigilv1.ApprovalScope, user authenticationv1.UserInfo) *refusal {
	if wait.Effect != vigilv1.EffectPassStep {
		if scope == vigilv1.ApprovalScopeFull {
			return &refusal{DeniedFullNotAllowed, fmt.Sprintf("scope Full passes approval steps only; Rollout %s waits for an approval to %s", ro.Name, wait.Effect)}
		}
		return nil
	}
	steps := ro.Spec.Strategy.Canary.Steps
	check := []int32{wait.Step}
	for j := wait.Step + 1; scope == vigilv1.ApprovalScopeFull && int(j) < len(steps); j++ {
		if proof.WaitsForPeople(steps[j]) {
			check = append(check, j)
		}
	}
	for _, j := range check {
		if int(j) >= len(steps) || steps[j].Approval == nil {
			continue
		}
		ap := steps[j].Approval
		if len(ap.Users) == 0 && len(ap.Groups) == 0 {
			continue
		}
		if slices.Contains(ap.Users, user.Username) || slices.ContainsFunc(user.Groups, func(g string) bool { return slices.Contains(ap.Groups, g) }) {
			continue
		}
		what := "step"
		if j != wait.Step {
			what = "scope Full skips step"
		}
		return &refusal{DeniedNotAnApprover, fmt.Sprintf("%s is not among the approvers of %s %d of Rollout %s (users %s; groups %s)",
			user.Username, what, j, ro.Name, list(ap.Users), list(ap.Groups))}
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// guard keeps an Approval's seal as admitted and its status the
// controller's alone.
func (w *Admission) guard(ctx context.Context, req admission.Request) admission.Response {
	if req.Operation != admissionv1.Update {
		return admission.Allowed("")
	}
	if req.SubResource == "status" {
		if req.UserInfo.Username == w.Controller {
			return admission.Allowed("")
		}
		return deny(refusal{DeniedStatusWriter, fmt.Sprintf("only Vigil's controller (%s) writes the status of an Approval; %s may not", w.Controller, req.UserInfo.Username)})
	}
	var before, after vigilv1.Approval
	if err := w.decoder.DecodeRaw(req.OldObject, &before); err != nil {
		return count(admission.Errored(http.StatusBadRequest, err), DeniedMalformed)
	}
	if err := w.decoder.DecodeRaw(req.Object, &after); err != nil {
		return count(admission.Errored(http.StatusBadRequest, err), DeniedMalformed)
	}
	for _, k := range []string{vigilv1.AnnotationApprovalIdentity, vigilv1.AnnotationApprovalSeal} {
		if before.Annotations[k] != after.Annotations[k] {
			return deny(refusal{DeniedIdentityImmutable, fmt.Sprintf("annotation %s of an Approval is set by Vigil's admission webhook when it is created and never changes", k)})
		}
	}
	return admission.Allowed("")
}

func deny(r refusal) admission.Response {
	return count(admission.Denied(r.message), r.reason)
}
