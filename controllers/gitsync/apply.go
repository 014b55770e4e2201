package gitsync

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/argoproj/argo-cd/gitops-engine/pkg/sync/common"
	"github.com/argoproj/argo-cd/gitops-engine/pkg/utils/kube"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	ctrl "sigs.k8s.io/controller-runtime"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
	"github.com/vigil-dev/vigil/outcome"
)

// waveWait is how soon to look again while a sync waits for a wave to
// become healthy.
const waveWait = time.Second

// syncResult is how the sync step of a reconcile ended.
type syncResult int

const (
	// syncNotRun: no sync step ran, or it could not read the cluster.
	syncNotRun syncResult = iota
	// syncInSync: the cluster already matched the target.
	syncInSync
	// syncUnderway: a sync's waves are still being applied.
	syncUnderway
	// syncSucceeded: the target was applied (or re-applied).
	syncSucceeded
	// syncFailed: gitops-engine could not apply the target.
	syncFailed
)

// sync makes the cluster match s.target: it applies a commit not yet
// applied, continues a sync whose waves are under way, and otherwise looks
// for drift, reverting it with selfHeal and reporting it without. It
// returns how soon to look again (0: at the interval).
func (r *Reconciler) sync(ctx context.Context, s *scope) (time.Duration, error) {
	gs, st, target := s.gs, s.st, s.target
	start := r.Clock.Now()
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
	s.extra = extraneous(target.objs, live)
	if applied && !underway {
		if s.drift, err = r.Engine.Drifted(ctx, target.objs, live); err != nil {
			return 0, err
		}
	}
	s.checked = true
	heal := gs.Spec.SelfHeal && len(s.drift) > 0
	prune := gs.Spec.Prune && len(s.extra) > 0
	if applied && !underway && !heal && !prune {
		gs.Status.Resources = resources(target.objs, live, st.op)
		s.synced = syncInSync
		return 0, nil
	}
	op, err := r.Engine.Sync(ctx, target.rev, gs.Namespace, target.objs, live, gs.Spec.Prune, st.op)
	took := r.Clock.Since(start).Seconds()
	s.notes.Metric(func() { syncLatency.Observe(took) })
	if err != nil {
		s.notes.Metric(syncs.WithLabelValues(string(outcome.Unknown)).Inc)
		return 0, err
	}
	st.op = op
	gs.Status.Resources = resources(target.objs, live, op)
	return r.record(ctx, s, op, heal), nil
}

// record puts the state of a sync step into status and the scope.
func (r *Reconciler) record(ctx context.Context, s *scope, op *gitops.Operation, healed bool) time.Duration {
	gs, target := s.gs, s.target
	switch {
	case !op.Done():
		s.synced = syncUnderway
		s.syncMessage = op.Message
		s.notes.Metric(syncs.WithLabelValues(string(outcome.Unknown)).Inc)
		return waveWait
	case op.Phase == common.OperationSucceeded:
		s.synced, s.healed = syncSucceeded, healed
		s.notes.Metric(syncs.WithLabelValues(string(outcome.Success)).Inc)
		gs.Status.LastAppliedRevision, gs.Status.LastAppliedSigner = target.rev, target.signer
		gs.Status.LastSyncTime = &metav1.Time{Time: s.now}
		s.st.applied = target
		return 0
	default:
		s.synced, s.syncMessage = syncFailed, failures(op)
		s.notes.Metric(syncs.WithLabelValues(string(outcome.Failure)).Inc)
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
				rs.Sync, rs.Message = "Failed", outcome.Shorten(res.Message, 512)
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

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
