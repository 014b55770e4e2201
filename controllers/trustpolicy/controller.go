package trustpolicy

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/controllers/skeleton"
	"github.com/vigil-dev/vigil/outcome"
	"github.com/vigil-dev/vigil/provenance"
)

// +kubebuilder:rbac:groups=vigil.dev,resources=trustpolicies,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=trustpolicies/status,verbs=patch
// +kubebuilder:rbac:groups="",resources=configmaps,verbs=get
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// Reconciler keeps each TrustPolicy's Ready condition and policyHash.
type Reconciler struct {
	client.Client
	// APIReader reads keys and trusted roots, uncached.
	APIReader client.Reader
	// Interval is how often the trust material is read again, since
	// Secrets and ConfigMaps are not watched; zero is a minute.
	Interval time.Duration
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Interval == 0 {
		r.Interval = time.Minute
	}
	return ctrl.NewControllerManagedBy(mgr).For(&vigilv1.TrustPolicy{}).Complete(r)
}

// Reconcile loads one TrustPolicy and records whether it is usable, on the
// shared skeleton. It records no Events: the Rollouts it blocks do.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	return skeleton.Loop[vigilv1.TrustPolicy, *vigilv1.TrustPolicy]{
		Kind: "TrustPolicy", Reader: r.Client, Writer: r.Client,
		Status: func(tp *vigilv1.TrustPolicy) any { return &tp.Status },
	}.Run(ctx, req, r.reconcilePolicy)
}

func (r *Reconciler) reconcilePolicy(ctx context.Context, tp *vigilv1.TrustPolicy, _ *skeleton.Notes) (ctrl.Result, error) {
	p, err := Load(ctx, r.APIReader, tp)
	if outcome.IsUnknown(err) {
		return ctrl.Result{}, err
	}
	setStatus(tp, p, err)
	return ctrl.Result{RequeueAfter: r.Interval}, nil
}

// setStatus is the status of tp once its policy loaded as p, or failed to
// load with err (a Failure, whose reason becomes Ready's and Stalled's).
func setStatus(tp *vigilv1.TrustPolicy, p *provenance.Policy, err error) {
	st := &tp.Status
	st.ObservedGeneration = tp.Generation
	set := func(typ string, status metav1.ConditionStatus, reason, msg string) {
		meta.SetStatusCondition(&st.Conditions.Conditions, metav1.Condition{Type: typ, Status: status, Reason: reason,
			Message: outcome.Shorten(msg, 2048), ObservedGeneration: tp.Generation})
	}
	if err != nil {
		o := outcome.Of(err, vigilv1.ReasonPolicyInvalid)
		st.PolicyHash = ""
		set(vigilv1.ConditionReady, metav1.ConditionFalse, o.Reason, o.Message)
		set(vigilv1.ConditionStalled, metav1.ConditionTrue, o.Reason, o.Message)
		return
	}
	st.PolicyHash = p.Hash()
	set(vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonLoaded, fmt.Sprintf("%d authorities loaded; mode %s", len(p.Authorities), Mode(tp)))
	meta.RemoveStatusCondition(&st.Conditions.Conditions, vigilv1.ConditionStalled)
}

// Mode is the policy's mode, Enforce when unset.
func Mode(tp *vigilv1.TrustPolicy) vigilv1.TrustPolicyMode {
	if tp.Spec.Mode == "" {
		return vigilv1.TrustPolicyEnforce
	}
	return tp.Spec.Mode
}
