package gitsync

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/utils/kube"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
)

// waveWait is how soon to look again while a sync waits for a wave to
// become healthy.
const waveWait = time.Second

// sync makes the cluster match target: it applies a commit not yet
// applied, continues a sync whose waves are under way, and otherwise looks
// for drift, reverting it with selfHeal and reporting it without. fresh is
// false when target is the last applied commit standing in for a refused
// newer one. It returns how soon to look again (0: at the interval).
func (r *Reconciler) sync(ctx context.Context, gs *vigilv1.GitSync, st *state, target *rendered, fresh bool) (time.Duration, error) {
	start := time.Now()
	inventory := make([]gitops.Key, 0, len(gs.Status.Resources))
	for _, res := range gs.Status.Resources {
		inventory = append(inventory, kube.NewResourceKey(res.Group, res.Kind, res.Namespace, res.Name))
	}
	live, err := r.Engine.Live(ctx, target.objs, inventory, owner(gs))
	if err != nil {
		return 0, err
	}
	applied := gs.Status.LastAppliedRevision == target.rev
	underway := st.op != nil && !st.op.Done() && st.op.Revision == target.rev
	var drift []gitops.Drift
	extra := extraneous(target.objs, live)
	if applied && !underway {
		if drift, err = r.Engine.Drifted(ctx, target.objs, live); err != nil {
			return 0, err
		}
	}
	setDrift(gs, drift, extra)
	heal := gs.Spec.SelfHeal && len(drift) > 0
	prune := gs.Spec.Prune && len(extra) > 0
	if applied && !underway && !heal && !prune {
		gs.Status.Resources = resources(target.objs, live, st.op)
		if fresh {
			setCondition(gs, vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonSynced, "applied commit "+short(target.rev))
		}
		return 0, nil
	}
	op, err := r.Engine.Sync(ctx, target.rev, gs.Namespace, target.objs, live, gs.Spec.Prune, st.op)
	syncLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		syncs.WithLabelValues(outcomeUnknown).Inc()
		return 0, err
	}
	st.op = op
	gs.Status.Resources = resources(target.objs, live, op)
	return r.record(ctx, gs, st, target, op, fresh, heal, drift), nil
}

// record puts the state of a sync step into status.
// Ready is only set True when target is the commit the ref names now
// (fresh), not the last good one standing in for a refused commit.
func (r *Reconciler) record(ctx context.Context, gs *vigilv1.GitSync, st *state, target *rendered, op *gitops.Operation, fresh, healed bool, drift []gitops.Drift) time.Duration {
	now := metav1.Now()
	switch {
	case !op.Done():
		syncs.WithLabelValues(outcomeUnknown).Inc()
		setCondition(gs, vigilv1.ConditionReconciling, metav1.ConditionTrue, vigilv1.ReasonSyncing, "syncing commit "+short(target.rev)+": "+op.Message)
		setCondition(gs, vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSyncing, "syncing commit "+short(target.rev)+": "+op.Message)
		return waveWait
	case op.Phase == common.OperationSucceeded:
		syncs.WithLabelValues(outcomeSuccess).Inc()
		gs.Status.LastAppliedRevision, gs.Status.LastAppliedSigner, gs.Status.LastSyncTime = target.rev, target.signer, &now
		st.applied = target
		removeReconciling(gs)
		if healed {
			drifts.WithLabelValues("Reverted").Inc()
			r.Recorder.Eventf(gs, nil, "Normal", vigilv1.ReasonDriftReverted, "Revert", "Re-applied %d object(s) that had drifted from commit %s: %s", len(drift), short(target.rev), driftList(drift, nil))
			setDriftCondition(gs, metav1.ConditionFalse, vigilv1.ReasonDriftReverted, "drift reverted at "+now.UTC().Format(time.RFC3339)+": "+driftList(drift, nil))
		}
		if fresh {
			setCondition(gs, vigilv1.ConditionReady, metav1.ConditionTrue, vigilv1.ReasonSynced, "applied commit "+short(target.rev))
		}
		return 0
	default:
		syncs.WithLabelValues(outcomeFailure).Inc()
		removeReconciling(gs)
		msg := "commit " + short(target.rev) + " failed to sync: " + failures(op)
		setCondition(gs, vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSyncFailed, msg)
		ctrl.LoggerFrom(ctx).Info("Sync failed", "revision", target.rev, "message", op.Message)
		return 0
	}
}

// extraneous are live objects owned by the GitSync that are no longer in Git.
func extraneous(targets []*unstructured.Unstructured, live map[gitops.Key]*unstructured.Unstructured) []gitops.Key {
	want := map[gitops.Key]bool{}
	for _, t := range targets {
		want[kube.GetResourceKey(t)] = true
	}
	var out []gitops.Key
	for k := range live {
		if !want[k] {
			out = append(out, k)
		}
	}
	return out
}

// resources lists every object in Git and every owned object left over,
// with its sync result and health.
func resources(targets []*unstructured.Unstructured, live map[gitops.Key]*unstructured.Unstructured, op *gitops.Operation) []vigilv1.ResourceStatus {
	results := map[gitops.Key]common.ResourceSyncResult{}
	if op != nil {
		for _, res := range op.Results {
			results[res.ResourceKey] = res
		}
	}
	var out []vigilv1.ResourceStatus
	add := func(k gitops.Key, inGit bool) {
		h, _ := gitops.Health(live[k])
		rs := vigilv1.ResourceStatus{Group: k.Group, Kind: k.Kind, Namespace: k.Namespace, Name: k.Name, Health: string(h), Sync: "Synced"}
		if live[k] == nil {
			rs.Sync = "OutOfSync"
		}
		if !inGit {
			rs.Sync, rs.Message = "OutOfSync", "not in Git; kept because prune is off"
		}
		if res, ok := results[k]; ok {
			switch res.Status {
			case common.ResultCodeSyncFailed:
				rs.Sync, rs.Message = "Failed", clip(res.Message, 512)
			case common.ResultCodePruned:
				return // gone; if its deletion waits on finalizers, the next look lists it again
			}
		}
		out = append(out, rs)
	}
	seen := map[gitops.Key]bool{}
	for _, t := range targets {
		k := kube.GetResourceKey(t)
		seen[k] = true
		add(k, true)
	}
	for k := range live {
		if !seen[k] {
			add(k, false)
		}
	}
	if len(out) > 5000 {
		out = out[:5000]
	}
	return out
}

func failures(op *gitops.Operation) string {
	var parts []string
	for _, res := range op.Results {
		if res.Status == common.ResultCodeSyncFailed {
			parts = append(parts, fmt.Sprintf("%s %s: %s", res.ResourceKey.Kind, res.ResourceKey.Name, res.Message))
		}
	}
	if len(parts) == 0 {
		return op.Message
	}
	return strings.Join(parts, "; ")
}

// setDrift sets the Drifted condition: True, listing the objects, when
// objects differ from Git and selfHeal is off (or objects Git dropped are
// kept because prune is off); False otherwise.
func setDrift(gs *vigilv1.GitSync, drift []gitops.Drift, extra []gitops.Key) {
	keep := extra
	if gs.Spec.Prune {
		keep = nil
	}
	if (len(drift) == 0 || gs.Spec.SelfHeal) && len(keep) == 0 {
		c := findCondition(gs, vigilv1.ConditionDrifted)
		if c == nil || c.Reason != vigilv1.ReasonDriftReverted || len(drift) > 0 {
			setDriftCondition(gs, metav1.ConditionFalse, vigilv1.ReasonNoDrift, "every object matches Git")
		}
		return
	}
	var heal []gitops.Drift
	if !gs.Spec.SelfHeal {
		heal = drift
	}
	setDriftCondition(gs, metav1.ConditionTrue, vigilv1.ReasonDriftDetected, driftList(heal, keep))
}

func driftList(drift []gitops.Drift, extra []gitops.Key) string {
	var parts []string
	for _, d := range drift {
		what := "modified"
		if d.Missing {
			what = "missing"
		}
		parts = append(parts, fmt.Sprintf("%s %s (%s)", d.Key.Kind, d.Key.Name, what))
	}
	for _, k := range extra {
		parts = append(parts, fmt.Sprintf("%s %s (not in Git, prune is off)", k.Kind, k.Name))
	}
	if len(parts) > 20 {
		parts = append(parts[:20], fmt.Sprintf("and %d more", len(parts)-20))
	}
	return strings.Join(parts, ", ")
}

func setDriftCondition(gs *vigilv1.GitSync, s metav1.ConditionStatus, reason, msg string) {
	setCondition(gs, vigilv1.ConditionDrifted, s, reason, msg)
}

func findCondition(gs *vigilv1.GitSync, t string) *metav1.Condition {
	return meta.FindStatusCondition(gs.Status.Conditions.Conditions, t)
}

func removeReconciling(gs *vigilv1.GitSync) {
	meta.RemoveStatusCondition(&gs.Status.Conditions.Conditions, vigilv1.ConditionReconciling)
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// announce records Events for what changed between two statuses.
func (r *Reconciler) announce(gs, before *vigilv1.GitSync) {
	if rev := gs.Status.LastAttemptedRevision; rev != "" && rev != before.Status.LastAttemptedRevision {
		r.Recorder.Eventf(gs, nil, "Normal", vigilv1.ReasonNewRevision, "Fetch", "Fetched commit %s of %s", short(rev), gs.Spec.URL)
	}
	if rev := gs.Status.LastAppliedRevision; rev != "" && rev != before.Status.LastAppliedRevision {
		r.Recorder.Eventf(gs, nil, "Normal", vigilv1.ReasonApplied, "Sync", "Applied commit %s (%d objects)", short(rev), len(gs.Status.Resources))
	}
	now, was := findCondition(gs, vigilv1.ConditionReady), findCondition(before, vigilv1.ConditionReady)
	if now != nil && now.Status == metav1.ConditionFalse && now.Reason != vigilv1.ReasonSyncing && now.Reason != vigilv1.ReasonSuspended &&
		(was == nil || was.Reason != now.Reason || was.Message != now.Message) {
		r.Recorder.Eventf(gs, nil, "Warning", now.Reason, "Sync", "%s", now.Message)
	}
	d, wasD := findCondition(gs, vigilv1.ConditionDrifted), findCondition(before, vigilv1.ConditionDrifted)
	if d != nil && d.Status == metav1.ConditionTrue && (wasD == nil || wasD.Status != metav1.ConditionTrue || wasD.Message != d.Message) {
		drifts.WithLabelValues("Reported").Inc()
		r.Recorder.Eventf(gs, nil, "Warning", vigilv1.ReasonDriftDetected, "Compare", "Objects differ from Git: %s", d.Message)
	}
}
