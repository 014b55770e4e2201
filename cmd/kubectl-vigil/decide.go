package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// decisionKind is one of the four decisions a person makes on a canary.
type decisionKind struct {
	use, short, long string
	decision         vigilv1.ApprovalDecision
	// effects an Approve may answer (none for a Reject).
	effects []vigilv1.PendingEffect
	// anyStep: a Reject of the canary's current step, whatever it is.
	anyStep bool
}

var (
	approveCmd = decisionKind{use: "approve", decision: vigilv1.ApprovalApprove, effects: []vigilv1.PendingEffect{vigilv1.EffectPassStep},
		short: "Approve the step the Rollout waits at",
		long:  "Approve the step the Rollout waits at (status.pendingApproval). With --full, skip the remaining steps, which takes as many people as the strictest remaining approval step needs."}
	rejectCmd = decisionKind{use: "reject", decision: vigilv1.ApprovalReject,
		short: "Reject the canary at the step that waits for approval; it is rolled back",
		long:  "Reject the canary at the step that waits for approval (status.pendingApproval); Vigil rolls it back. --reason is required."}
	retryCmd = decisionKind{use: "retry", decision: vigilv1.ApprovalApprove, effects: []vigilv1.PendingEffect{vigilv1.EffectRetryRevision, vigilv1.EffectRunAnalysisAgain},
		short: "Retry a rolled-back revision from step 0, or run a paused analysis again",
		long:  "Approve what a rolled-back Rollout or a paused analysis waits for: the revision is retried from step 0, or the step's analysis runs again."}
	abortCmd = decisionKind{use: "abort", decision: vigilv1.ApprovalReject, anyStep: true,
		short: "Abort the canary at whatever step it is; it is rolled back",
		long:  "Reject the canary at its current step, whatever the step is; Vigil rolls it back. --reason is required."}
)

func (a *app) decisionCommand(k decisionKind) *cobra.Command {
	var reason string
	var full bool
	var wait time.Duration
	cmd := &cobra.Command{
		Use:               k.use + " ROLLOUT",
		Short:             k.short,
		Long:              k.long,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRollouts,
		RunE: func(cmd *cobra.Command, args []string) error {
			if k.decision == vigilv1.ApprovalReject && strings.TrimSpace(reason) == "" {
				return fmt.Errorf("%s needs --reason: it is kept as evidence of why the canary was stopped", k.use)
			}
			return a.decide(cmd.Context(), k, args[0], reason, full, wait)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why; kept with the decision as evidence")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for the Rollout to act on the decision; 0 does not wait")
	if k.use == "approve" {
		cmd.Flags().BoolVar(&full, "full", false, "skip the remaining steps (scope Full)")
	}
	return cmd
}

// decide creates the Approval that k makes of what the Rollout waits for,
// prints it, and waits for the Rollout to act on it.
func (a *app) decide(ctx context.Context, k decisionKind, name, reason string, full bool, wait time.Duration) error {
	c, ro, err := a.rollout(ctx, name)
	if err != nil {
		return err
	}
	w, err := target(ro, k)
	if err != nil {
		return err
	}
	ap := &vigilv1.Approval{
		ObjectMeta: metav1.ObjectMeta{Namespace: ro.Namespace, Name: approvalName(ro.Name, w, k.use)},
		Spec: vigilv1.ApprovalSpec{RolloutRef: vigilv1.LocalObjectReference{Name: ro.Name}, Revision: w.Revision, Step: w.Step,
			Decision: k.decision, Scope: vigilv1.ApprovalScopeStep, Reason: reason},
	}
	if full {
		ap.Spec.Scope = vigilv1.ApprovalScopeFull
	}
	if err := c.Create(ctx, ap); err != nil {
		return fmt.Errorf("%s refused: %s", k.use, refusal(err))
	}
	a.printf("approval.vigil.dev/%s created: %s of revision %s at step %d of Rollout %s\n", ap.Name, k.decision, w.Revision, w.Step, ro.Name)
	var id proof.Identity
	if json.Unmarshal([]byte(ap.Annotations[vigilv1.AnnotationApprovalIdentity]), &id) == nil {
		a.printf("  recorded as made by %s\n", id.User)
	}
	if wait <= 0 {
		return nil
	}
	return a.await(ctx, c, ap, ro, wait)
}

// target is the revision and step a decision of kind k names now.
func target(ro *vigilv1.Rollout, k decisionKind) (proof.Wait, error) {
	if k.anyStep {
		w, why := proof.WaitOf(ro, vigilv1.ApprovalReject)
		if why != "" {
			return w, errors.New(why)
		}
		return w, nil
	}
	p := ro.Status.PendingApproval
	if p == nil {
		hint := ""
		if k.decision == vigilv1.ApprovalReject {
			hint = "; to stop the canary at any step, use kubectl vigil abort"
		}
		return proof.Wait{}, fmt.Errorf("Rollout %s waits for no approval now (%s: %s)%s", ro.Name, ro.Status.Phase, ro.Status.Message, hint)
	}
	if len(k.effects) > 0 && !slices.Contains(k.effects, p.Effect) {
		return proof.Wait{}, fmt.Errorf("Rollout %s waits for an approval to %s of revision %s at step %d; that is kubectl vigil %s, not %s",
			ro.Name, p.Effect, p.Revision, p.Step, commandFor(p.Effect), k.use)
	}
	return proof.Wait{Revision: p.Revision, Step: p.Step, Effect: p.Effect}, nil
}

func commandFor(e vigilv1.PendingEffect) string {
	if e == vigilv1.EffectPassStep {
		return "approve"
	}
	return "retry"
}

// approvalName names a decision so a person can read it in a listing.
func approvalName(rollout string, w proof.Wait, verb string) string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	rev := w.Revision
	if len(rev) > 10 {
		rev = rev[:10]
	}
	prefix := rollout
	if len(prefix) > 200 {
		prefix = prefix[:200]
	}
	return fmt.Sprintf("%s-%s-s%d-%s-%s", prefix, rev, w.Step, verb, hex.EncodeToString(b))
}

// refusal is the message of a refused create: the webhook's reason when it
// refused, else the API server's.
func refusal(err error) string {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		msg := status.Status().Message
		if i := strings.Index(msg, "denied the request: "); i >= 0 {
			return msg[i+len("denied the request: "):]
		}
		return msg
	}
	return err.Error()
}

// await waits until the Rollout used the Approval or the Approval says why
// it does not count, and prints what happened.
func (a *app) await(ctx context.Context, c client.Client, ap *vigilv1.Approval, ro *vigilv1.Rollout, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		cur := &vigilv1.Approval{}
		if err := c.Get(ctx, client.ObjectKeyFromObject(ap), cur); err == nil {
			if cond := meta.FindStatusCondition(cur.Status.Conditions.Conditions, vigilv1.ConditionCounted); cond != nil && cond.Reason != vigilv1.ApprovalCounting {
				a.printf("  %s: %s\n", cond.Reason, cond.Message)
				now := &vigilv1.Rollout{}
				if err := c.Get(ctx, client.ObjectKeyFromObject(ro), now); err == nil {
					a.printf("Rollout %s: %s: %s\n", now.Name, now.Status.Phase, now.Status.Message)
				}
				if cond.Reason != vigilv1.ApprovalUsed {
					return fmt.Errorf("Approval %s counts for nothing (%s)", cur.Name, cond.Reason)
				}
				return nil
			}
		}
		select {
		case <-ctx.Done():
			a.printf("  not acted on within %s; it counts until it expires (kubectl vigil get rollout %s shows what waits)\n", wait, ro.Name)
			return nil
		case <-tick.C:
		}
	}
}
