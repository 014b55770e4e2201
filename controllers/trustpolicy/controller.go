package trustpolicy

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
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

// Reconcile loads one TrustPolicy and records whether it is usable.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	tp := &vigilv1.TrustPolicy{}
	if err := r.Get(ctx, req.NamespacedName, tp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := tp.DeepCopy()
	p, err := Load(ctx, r.APIReader, tp)
	conds := &tp.Status.Conditions.Conditions
	switch {
	case errors.Is(err, ErrNotReady):
		tp.Status.PolicyHash = ""
		set(conds, tp, vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonPolicyNotFound, err.Error())
		set(conds, tp, vigilv1.ConditionStalled, metav1.ConditionTrue, vigilv1.ReasonPolicyNotFound, err.Error())
	case err != nil:
		return ctrl.Result{}, err
	default:
		tp.Status.PolicyHash = p.Hash()
		set(conds, tp, vigilv1.ConditionReady, metav1.ConditionTrue, "Loaded",
			fmt.Sprintf("%d authorities loaded; mode %s", len(p.Authorities), Mode(tp)))
		meta.RemoveStatusCondition(conds, vigilv1.ConditionStalled)
	}
	tp.Status.ObservedGeneration = tp.Generation
	if !equality.Semantic.DeepEqual(before.Status, tp.Status) {
		if err := r.Status().Patch(ctx, tp, client.MergeFrom(before)); err != nil && !apierrors.IsNotFound(err) {
			return ctrl.Result{}, fmt.Errorf("patching TrustPolicy status: %w", err)
		}
	}
	return ctrl.Result{RequeueAfter: r.Interval}, nil
}

func set(conds *[]metav1.Condition, tp *vigilv1.TrustPolicy, typ string, status metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(conds, metav1.Condition{Type: typ, Status: status, Reason: reason, Message: msg, ObservedGeneration: tp.Generation})
}

// Mode is the policy's mode, Enforce when unset.
func Mode(tp *vigilv1.TrustPolicy) vigilv1.TrustPolicyMode {
	if tp.Spec.Mode == "" {
		return vigilv1.TrustPolicyEnforce
	}
	return tp.Spec.Mode
}
