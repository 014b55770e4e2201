// Package gitsync is the GitSync controller: on every interval, or at once
// when a signed push webhook names the repository, it asks the server which
// commit the ref names, fetches it if it is new (shallow, within limits),
// checks its signature when verify is set, renders it, and syncs it with
// gitops-engine; between commits it compares the cluster with Git and
// reverts or reports drift. A commit that fails a check is never applied:
// the last good commit stays in place and a condition says why.
package gitsync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/source"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/gitops"
)

// The GitSync controller applies these kinds, in the GitSync's own
// namespace only; to let GitSyncs apply more kinds, grant them to the
// controller's ServiceAccount. Secrets are deliberately not among them.
// +kubebuilder:rbac:groups=vigil.dev,resources=gitsyncs,verbs=get;list;watch
// +kubebuilder:rbac:groups=vigil.dev,resources=gitsyncs/status,verbs=patch
// +kubebuilder:rbac:groups=vigil.dev,resources=rollouts;analysistemplates;trustpolicies;rollbackdrills,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=services;configmaps;serviceaccounts,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=gateway.networking.k8s.io,resources=httproutes,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get

// FieldManager is the server-side apply field manager of everything a
// GitSync applies.
const FieldManager = "vigil-gitsync"

// Reconciler reconciles GitSyncs.
type Reconciler struct {
	client.Client
	// APIReader reads credential and key Secrets one at a time, uncached.
	APIReader client.Reader
	Recorder  events.EventRecorder
	Engine    *gitops.Engine
	Limits    gitops.Limits
	// WorkDir holds fetches while they are read; each is removed after.
	WorkDir string
	// Pushes carries GitSyncs named by verified push webhooks.
	Pushes chan event.GenericEvent
	// Workers is how many GitSyncs are reconciled at once.
	Workers int

	mu     sync.Mutex
	states map[types.NamespacedName]*state
}

// state is what the controller remembers of one GitSync between
// reconciles. Losing it (a restart) costs one fetch.
type state struct {
	uid     types.UID // a GitSync deleted and made again starts afresh
	key     string    // generation and verification keys the result is for
	current *rendered
	err     error // why current's commit was refused, if it was
	applied *rendered
	op      *gitops.Operation
}

// rendered is one commit turned into objects.
type rendered struct {
	rev    string
	signer string
	objs   []*unstructured.Unstructured
}

// SetupWithManager registers the controller.
func (r *Reconciler) SetupWithManager(mgr ctrl.Manager) error {
	if r.Limits == (gitops.Limits{}) {
		r.Limits = gitops.DefaultLimits()
	}
	if r.Workers <= 0 {
		r.Workers = 2 // each may hold a tree of up to Limits.TreeBytes
	}
	if r.Pushes == nil {
		r.Pushes = make(chan event.GenericEvent, 256)
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&vigilv1.GitSync{}, builder.WithPredicates(predicate.GenerationChangedPredicate{})).
		WatchesRawSource(source.Channel(r.Pushes, &handler.EnqueueRequestForObject{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: r.Workers}).
		Complete(r)
}

// Reconcile fetches, verifies, renders and syncs one GitSync.
func (r *Reconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	gs := &vigilv1.GitSync{}
	if err := r.Get(ctx, req.NamespacedName, gs); err != nil {
		if apierrors.IsNotFound(err) {
			r.forget(req.NamespacedName)
		}
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	before := gs.DeepCopy()
	result, err := r.reconcile(ctx, gs)
	gs.Status.ObservedGeneration = gs.Generation
	if !equality.Semantic.DeepEqual(before.Status, gs.Status) {
		if perr := r.Status().Patch(ctx, gs, client.MergeFrom(before)); perr != nil && !apierrors.IsNotFound(perr) {
			return ctrl.Result{}, fmt.Errorf("patching GitSync status: %w", perr)
		}
		r.announce(gs, before)
	}
	return result, err
}

func (r *Reconciler) reconcile(ctx context.Context, gs *vigilv1.GitSync) (ctrl.Result, error) {
	if gs.Spec.Suspend {
		setCondition(gs, vigilv1.ConditionReady, metav1.ConditionFalse, vigilv1.ReasonSuspended, "spec.suspend is set; nothing is fetched or applied")
		meta.RemoveStatusCondition(&gs.Status.Conditions.Conditions, vigilv1.ConditionReconciling)
		return ctrl.Result{}, nil
	}
	interval := durationOr(&gs.Spec.Interval, 5*time.Minute)
	st := r.state(gs)
	target, err := r.fetch(ctx, gs, st)
	reason, unknown := gitops.ReasonOf(err)
	if err != nil {
		status := metav1.ConditionFalse
		if unknown {
			status = metav1.ConditionUnknown
		} else {
			setCondition(gs, vigilv1.ConditionStalled, metav1.ConditionTrue, string(reason), err.Error())
		}
		setCondition(gs, vigilv1.ConditionReady, status, string(reason), err.Error())
		if target = st.applied; target == nil {
			return ctrl.Result{RequeueAfter: retryAfter(unknown, interval)}, nil
		}
	} else {
		meta.RemoveStatusCondition(&gs.Status.Conditions.Conditions, vigilv1.ConditionStalled)
	}
	wait, serr := r.sync(ctx, gs, st, target, err == nil)
	if serr != nil {
		return ctrl.Result{}, serr
	}
	if err != nil {
		wait = retryAfter(unknown, interval)
	}
	if wait == 0 || wait > interval {
		wait = interval
	}
	return ctrl.Result{RequeueAfter: wait}, nil
}

// retryAfter is when to look again after a fetch went wrong: soon when the
// outcome was Unknown, at the next interval when the commit was refused.
func retryAfter(unknown bool, interval time.Duration) time.Duration {
	if unknown {
		return min(interval, 10*time.Second)
	}
	return interval
}

// fetch returns the objects of the commit the ref names now, fetching and
// checking it only when it is new (or the spec or trusted keys changed).
func (r *Reconciler) fetch(ctx context.Context, gs *vigilv1.GitSync, st *state) (*rendered, error) {
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, durationOr(gs.Spec.Timeout, time.Minute))
	defer cancel()
	src, trusted, err := r.source(tctx, gs)
	if err != nil {
		return nil, r.observeFetch(start, err)
	}
	rev, err := gitops.Resolve(tctx, src)
	gs.Status.LastFetchTime = &metav1.Time{Time: time.Now()}
	if err != nil {
		return nil, r.observeFetch(start, err)
	}
	key := fmt.Sprintf("%d/%s/%s", gs.Generation, trusted.digest, gs.Annotations[AcceptRewriteAnnotation])
	if st.key == key && st.current != nil && st.current.rev == rev {
		fetches.WithLabelValues(outcomeUnchanged, "").Inc()
		return st.current, st.err
	}
	dir, err := os.MkdirTemp(r.WorkDir, "gitsync-")
	if err != nil {
		return nil, fmt.Errorf("staging the fetch: %w", err)
	}
	defer os.RemoveAll(dir)
	var got *rendered
	snap, err := r.fastForward(tctx, gs, src, rev, dir)
	if err == nil {
		got, err = r.render(tctx, gs, src, trusted.keys, dir, snap)
	}
	if _, unknown := gitops.ReasonOf(err); err != nil && unknown {
		return nil, r.observeFetch(start, err) // says nothing of the commit: not remembered
	}
	if got == nil {
		got = &rendered{rev: rev} // refused before its commit was read
	}
	st.key, st.current, st.err = key, got, err
	gs.Status.LastAttemptedRevision = got.rev
	return got, r.observeFetch(start, err)
}

// AcceptRewriteAnnotation on a GitSync names a commit to apply even though
// the branch's history was rewritten to reach it.
const AcceptRewriteAnnotation = "vigil.dev/accept-history-rewrite"

// fastForward refuses a new commit of a branch that does not contain the
// commit last applied: the branch was force-pushed, and what was reviewed
// and deployed is no longer in its history. A person accepts the new
// commit by naming it in AcceptRewriteAnnotation. When it fetched the
// history, it returns the new commit from it, so that it is not fetched
// again.
func (r *Reconciler) fastForward(ctx context.Context, gs *vigilv1.GitSync, src gitops.Source, rev, dir string) (*gitops.Snapshot, error) {
	last := gs.Status.LastAppliedRevision
	if src.Ref.Branch == "" || last == "" || last == rev || gs.Annotations[AcceptRewriteAnnotation] == rev {
		return nil, nil
	}
	ref := "refs/heads/" + src.Ref.Branch
	h, err := gitops.FetchHistory(ctx, src.URL, src.Auth, []string{ref}, dir, r.Limits)
	if reason, _ := gitops.ReasonOf(err); err != nil && reason == gitops.ReasonLimitExceeded {
		return nil, gitops.Fail(reason, "checking that %s only moved forward from %s needs its history, which is larger than the limits: %v; "+
			"to apply %s without the check, annotate this GitSync with %s=%s", ref, last, err, rev, AcceptRewriteAnnotation, rev)
	}
	if err != nil {
		return nil, err
	}
	ok, err := h.IsAncestor(last, rev)
	if err != nil {
		// The branch moved again since it was resolved: look again soon.
		return nil, &gitops.Error{Reason: gitops.ReasonUnreachable, Unknown: true, Err: err}
	}
	if ok {
		return h.Snapshot(rev)
	}
	return nil, gitops.Fail(gitops.ReasonHistoryRewritten,
		"%s moved from %s to %s, which does not contain it: the branch's history was rewritten (force-push). %s stays applied; "+
			"to apply %s anyway, annotate this GitSync with %s=%s", ref, last, rev, last, rev, AcceptRewriteAnnotation, rev)
}

// render fetches (unless snap already holds it), verifies and renders one
// commit; on a refused commit it still returns the commit (without objects)
// so status can name it.
func (r *Reconciler) render(ctx context.Context, gs *vigilv1.GitSync, src gitops.Source, keys map[string][]byte, dir string, snap *gitops.Snapshot) (*rendered, error) {
	var err error
	if snap == nil {
		if snap, err = gitops.Fetch(ctx, src, dir, r.Limits); err != nil {
			return nil, err
		}
	}
	out := &rendered{rev: snap.Commit}
	if v := gs.Spec.Verify; v != nil {
		if out.signer, err = snap.Verify(string(v.Mode), keys); err != nil {
			return out, err
		}
	}
	fs, err := snap.Tree()
	if err != nil {
		return out, err
	}
	objs, err := gitops.Render(fs, gs.Spec.Path, r.Limits)
	if err != nil {
		return out, err
	}
	if err := r.Engine.Scope(objs, gs.Namespace, owner(gs), snap.Commit); err != nil {
		return out, err
	}
	out.objs = objs
	return out, nil
}

func (r *Reconciler) observeFetch(start time.Time, err error) error {
	outcome, reason := outcomeSuccess, ""
	if err != nil {
		var unknown bool
		var rs gitops.Reason
		rs, unknown = gitops.ReasonOf(err)
		outcome, reason = outcomeFailure, string(rs)
		if unknown {
			outcome = outcomeUnknown
		}
	}
	fetches.WithLabelValues(outcome, reason).Inc()
	fetchLatency.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return err
}

// trust is the verification keys a GitSync names, and a digest of them so
// a change of keys re-verifies the commit.
type trust struct {
	keys   map[string][]byte
	digest string
}

// source builds the fetch source with its credentials, and reads the
// verification keys.
func (r *Reconciler) source(ctx context.Context, gs *vigilv1.GitSync) (gitops.Source, trust, error) {
	src := gitops.Source{URL: gs.Spec.URL, Ref: gitops.Ref{Branch: gs.Spec.Ref.Branch, Tag: gs.Spec.Ref.Tag, Commit: gs.Spec.Ref.Commit}}
	if ref := gs.Spec.SecretRef; ref != nil {
		data, err := r.secretData(ctx, gs.Namespace, ref.Name)
		if err != nil {
			return src, trust{}, err
		}
		if src.Auth, err = gitops.Auth(gs.Spec.URL, data); err != nil {
			return src, trust{}, err
		}
	}
	var t trust
	if v := gs.Spec.Verify; v != nil {
		keys, err := r.secretData(ctx, gs.Namespace, v.SecretRef.Name)
		if err != nil {
			return src, trust{}, err
		}
		h := sha256.New()
		names := make([]string, 0, len(keys))
		for k := range keys {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			fmt.Fprintf(h, "%s=%x;", k, keys[k])
		}
		t = trust{keys: keys, digest: string(v.Mode) + ":" + hex.EncodeToString(h.Sum(nil))}
	}
	return src, t, nil
}

// secretData reads a Secret of the GitSync's namespace. A missing Secret
// is the user's to fix, not a transient error; errors never hold values.
func (r *Reconciler) secretData(ctx context.Context, ns, name string) (map[string][]byte, error) {
	return readSecret(ctx, r.APIReader, ns, name)
}

func readSecret(ctx context.Context, api client.Reader, ns, name string) (map[string][]byte, error) {
	s := &corev1.Secret{}
	if err := api.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, s); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, &gitops.Error{Reason: gitops.ReasonAuthFailed, Err: fmt.Errorf("secret %s does not exist", name)}
		}
		return nil, &gitops.Error{Reason: gitops.ReasonUnreachable, Unknown: true, Err: fmt.Errorf("reading secret %s: %w", name, err)}
	}
	return s.Data, nil
}

func (r *Reconciler) state(gs *vigilv1.GitSync) *state {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.states == nil {
		r.states = map[types.NamespacedName]*state{}
	}
	name := types.NamespacedName{Namespace: gs.Namespace, Name: gs.Name}
	st, ok := r.states[name]
	if !ok || st.uid != gs.UID {
		st = &state{uid: gs.UID}
		r.states[name] = st
	}
	return st
}

// forget drops the state of a deleted GitSync.
func (r *Reconciler) forget(name types.NamespacedName) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.states, name)
}

func owner(gs *vigilv1.GitSync) string { return gs.Namespace + "/" + gs.Name }

func durationOr(d *vigilv1.Duration, def time.Duration) time.Duration {
	if d != nil {
		if v, err := d.Get(); err == nil && v > 0 {
			return v
		}
	}
	return def
}

func setCondition(gs *vigilv1.GitSync, t string, s metav1.ConditionStatus, reason, msg string) {
	meta.SetStatusCondition(&gs.Status.Conditions.Conditions, metav1.Condition{
		Type: t, Status: s, Reason: reason, Message: clip(msg, 2048), ObservedGeneration: gs.Generation,
	})
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}
