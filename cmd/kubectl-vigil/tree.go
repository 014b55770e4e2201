package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

func (a *app) getCommand() *cobra.Command {
	var follow bool
	cmd := &cobra.Command{
		Use:   "get rollout NAME",
		Short: "Show a Rollout as a tree: revisions, ReplicaSets and ready pods, weights, step, analysis, approval, verification",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 2 || !slices.Contains([]string{"rollout", "rollouts", "ro"}, args[0]) {
				return fmt.Errorf("usage: kubectl vigil get rollout NAME [-w]")
			}
			return nil
		},
		ValidArgsFunction: func(cmd *cobra.Command, args []string, s string) ([]string, cobra.ShellCompDirective) {
			if len(args) == 0 {
				return []string{"rollout"}, cobra.ShellCompDirectiveNoFileComp
			}
			return a.completeRollouts(cmd, args[1:], s)
		},
		RunE: func(cmd *cobra.Command, args []string) error { return a.get(cmd.Context(), args[1], follow) },
	}
	cmd.Flags().BoolVarP(&follow, "watch", "w", false, "keep printing the tree each time the Rollout changes")
	return cmd
}

// get prints the Rollout's tree, and with follow again on every change
// until interrupted.
func (a *app) get(ctx context.Context, name string, follow bool) error {
	c, ro, err := a.rollout(ctx, name)
	if err != nil {
		return err
	}
	if err := a.printTree(ctx, c, ro); err != nil || !follow {
		return err
	}
	for ctx.Err() == nil {
		w, err := c.Watch(ctx, &vigilv1.RolloutList{}, client.InNamespace(ro.Namespace),
			client.MatchingFieldsSelector{Selector: fields.OneTermEqualSelector("metadata.name", name)})
		if err != nil {
			return err
		}
		for ev := range w.ResultChan() {
			cur, ok := ev.Object.(*vigilv1.Rollout)
			if !ok || ev.Type == watch.Bookmark || cur.ResourceVersion == ro.ResourceVersion {
				continue
			}
			if ev.Type == watch.Deleted {
				w.Stop()
				a.printf("Rollout %s was deleted\n", name)
				return nil
			}
			ro = cur
			a.printf("\n")
			if err := a.printTree(ctx, c, ro); err != nil {
				w.Stop()
				return err
			}
		}
		w.Stop()
	}
	return nil
}

// printTree prints one Rollout with its ReplicaSets.
func (a *app) printTree(ctx context.Context, c client.Client, ro *vigilv1.Rollout) error {
	var sets appsv1.ReplicaSetList
	if err := c.List(ctx, &sets, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name}); err != nil {
		return fmt.Errorf("listing the ReplicaSets of Rollout %s: %w", ro.Name, err)
	}
	render(a.streams.Out, ro, sets.Items, time.Now())
	return nil
}

// render writes ro as a tree.
func render(out io.Writer, ro *vigilv1.Rollout, sets []appsv1.ReplicaSet, now time.Time) {
	st := &ro.Status
	fmt.Fprintf(out, "Rollout %s/%s  %s\n", ro.Namespace, ro.Name, orDash(string(st.Phase)))
	fmt.Fprintf(out, "├─ message: %s\n", orDash(st.Message))
	steps := ro.Spec.Strategy.Canary.Steps
	if st.CanaryRevision != "" {
		i := ptr.Deref(st.CurrentStepIndex, 0)
		fmt.Fprintf(out, "├─ step: %d of %d%s\n", i, len(steps), stepKind(steps, i))
	}
	fmt.Fprintf(out, "├─ traffic: stable %d%%, canary %d%%\n", st.StableWeight, st.CanaryWeight)
	fmt.Fprintf(out, "├─ revisions\n")
	slices.SortFunc(sets, func(x, y appsv1.ReplicaSet) int { return y.CreationTimestamp.Compare(x.CreationTimestamp.Time) })
	for i, rs := range sets {
		branch := "│  ├─"
		if i == len(sets)-1 {
			branch = "│  └─"
		}
		rev := rs.Labels[vigilv1.LabelPodTemplateHash]
		fmt.Fprintf(out, "%s %s %-7s ReplicaSet %s  %d/%d ready  %s\n", branch, rev, role(st, rev), rs.Name,
			rs.Status.ReadyReplicas, ptr.Deref(rs.Spec.Replicas, 0), images(rs))
	}
	for _, an := range []struct {
		what string
		a    *vigilv1.RolloutAnalysis
	}{{"analysis", st.Analysis}, {"background analysis", st.BackgroundAnalysis}} {
		if an.a != nil {
			fmt.Fprintf(out, "├─ %s: %s (AnalysisRun %s)%s\n", an.what, orDash(string(an.a.Verdict)), an.a.Run, prefixed(": ", an.a.Message))
		}
	}
	if v := st.Verification; v != nil {
		fmt.Fprintf(out, "├─ verification: %s of revision %s%s\n", v.Result, v.Revision, prefixed(": ", v.Message))
	} else if ro.Spec.Provenance == nil {
		fmt.Fprintf(out, "├─ verification: none (no provenance.policyRef)\n")
	}
	if p := st.PendingApproval; p != nil {
		fmt.Fprintf(out, "└─ waiting: approval to %s of revision %s at step %d, %d of %d, for %s (kubectl vigil %s %s)\n",
			p.Effect, p.Revision, p.Step, p.Received, p.Required, now.Sub(p.Since.Time).Round(time.Second), commandFor(p.Effect), ro.Name)
	} else if c := meta.FindStatusCondition(st.Conditions.Conditions, vigilv1.ConditionReady); c != nil {
		fmt.Fprintf(out, "└─ ready: %s (%s)\n", c.Status, c.Reason)
	} else {
		fmt.Fprintf(out, "└─ ready: -\n")
	}
}

func stepKind(steps []vigilv1.CanaryStep, i int32) string {
	if int(i) >= len(steps) {
		return " (all passed)"
	}
	s := steps[i]
	switch {
	case s.SetWeight != nil:
		return fmt.Sprintf(" (setWeight %d%%)", *s.SetWeight)
	case s.Approval != nil:
		return fmt.Sprintf(" (approval by %d)", max(s.Approval.RequiredApprovals, 1))
	case s.Analysis != nil:
		return " (analysis)"
	case s.Pause != nil && s.Pause.Duration != nil:
		return fmt.Sprintf(" (pause %s)", *s.Pause.Duration)
	}
	return " (pause until approved)"
}

func role(st *vigilv1.RolloutStatus, rev string) string {
	switch rev {
	case st.CanaryRevision:
		return "canary"
	case st.StableRevision:
		return "stable"
	}
	return "old"
}

func images(rs appsv1.ReplicaSet) string {
	var out []string
	for _, c := range rs.Spec.Template.Spec.Containers {
		out = append(out, c.Image)
	}
	return "(" + strings.Join(out, ", ") + ")"
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func (a *app) listCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the Rollouts of the namespace with their phase, step and pending approval",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, ns, err := a.client()
			if err != nil {
				return err
			}
			var list vigilv1.RolloutList
			if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.streams.Out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAME\tPHASE\tSTEP\tCANARY%\tSTABLE\tCANARY\tWAITING FOR")
			for _, ro := range list.Items {
				st := ro.Status
				step, waiting := "-", "-"
				if st.CanaryRevision != "" {
					step = fmt.Sprintf("%d/%d", ptr.Deref(st.CurrentStepIndex, 0), len(ro.Spec.Strategy.Canary.Steps))
				}
				if p := st.PendingApproval; p != nil {
					waiting = fmt.Sprintf("%s step %d (%d/%d)", commandFor(p.Effect), p.Step, p.Received, p.Required)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\n", ro.Name, orDash(string(st.Phase)), step, st.CanaryWeight,
					orDash(st.StableRevision), orDash(st.CanaryRevision), waiting)
			}
			return tw.Flush()
		},
	}
}
