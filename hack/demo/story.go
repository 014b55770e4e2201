package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/controller-runtime/pkg/client"

	appsv1 "k8s.io/api/apps/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	"github.com/vigil-dev/vigil/hack/demo/world"
)

// tell brings the world up and plays the story: v1 stable, v2 verified and
// promoted through analysis and an approval, v3 rolled back on its errors,
// v4 blocked for want of a signature.
func tell(ctx context.Context, o world.Options, assets string) error {
	start := time.Now()
	out := o.Out
	chapter := func(s string) { fmt.Fprintf(out, "\n━━ %s\n", s) }
	note := func(format string, args ...any) { fmt.Fprintf(out, "  "+format+"\n", args...) }

	chapter("Setting the stage")
	note("kwok pods run no code, so a small exporter plays each canary and stable pod's")
	note("HTTP traffic (%d requests/s per Ready pod) and answers the share of 500s that the", world.RequestsPerSecond)
	note("pod template's %s annotation names. Everything else is real:", world.ErrorRateAnnotation)
	note("API server, Git server, OCI registry, signatures, Prometheus, Vigil.")
	w, err := world.Up(ctx, o)
	if err != nil {
		return err
	}

	chapter("v1: the first release becomes stable")
	v1, err := w.Release(ctx, world.Version{Name: "v1"})
	if err != nil {
		return err
	}
	note("committed %s (app) and %s (deploy), pushed, image %s signed with provenance", short(v1.Source), short(v1.Deploy), v1.Image)
	ro, err := w.Watch(ctx, 3*time.Minute, "v1 to be stable", world.Promoted(v1))
	if err != nil {
		return err
	}
	note("✓ v1 is stable: revision %s, %d pods Ready", ro.Status.StableRevision, ro.Status.ReadyReplicas)

	chapter("v2: a signed release with provenance, through analysis and an approval")
	v2, err := w.Release(ctx, world.Version{Name: "v2"})
	if err != nil {
		return err
	}
	note("committed %s (app), built %s, signed it and attested SLSA provenance naming commit %s", short(v2.Source), v2.Image, short(v2.Source))
	note("committed %s (deploy: the Rollout now names %s), pushed", short(v2.Deploy), v2.Image)
	ro, err = w.Watch(ctx, 3*time.Minute, "v2 to wait for an approval", world.WaitsForApproval(v2))
	if err != nil {
		return err
	}
	if v := ro.Status.Verification; v != nil && len(v.Images) > 0 {
		im := v.Images[0]
		note("✓ verified: %s", im.Pinned)
		note("  signer %s, builder %s, source %s@%s", im.Signer, im.Builder, im.SourceRepository, short(im.SourceCommit))
	}
	reason := "demo: error rate is fine, ship it"
	note("an SRE approves the step with the kubectl plugin (%s, on PATH):", w.Plugin())
	fmt.Fprintf(out, "\n    %s vigil approve %s -n %s --reason %q\n", w.Kubectl(), ro.Name, ro.Namespace, reason)
	said, err := w.Approve(ctx, ro, reason)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(strings.TrimSpace(said), "\n", "\n    "))
	ro, err = w.Watch(ctx, 2*time.Minute, "v2 to be promoted", world.Promoted(v2))
	if err != nil {
		return err
	}
	note("✓ v2 is stable: revision %s", ro.Status.StableRevision)
	v2Revision := ro.Status.StableRevision

	chapter("v3: a bad build (8% errors) is rolled back automatically")
	v3, err := w.Release(ctx, world.Version{Name: "v3", ErrorRate: 0.08})
	if err != nil {
		return err
	}
	note("committed %s (app) and %s (deploy), pushed; v3 answers 8%% of requests with 500", short(v3.Source), short(v3.Deploy))
	ro, err = w.Watch(ctx, 3*time.Minute, "v3 to be rolled back", world.RolledBack(v3))
	if err != nil {
		return err
	}
	if a := ro.Status.Analysis; a != nil {
		note("✗ analysis %s was %s:", a.Run, a.Verdict)
		for _, m := range a.Measurements {
			if v, err := strconv.ParseFloat(m.Value, 64); err == nil {
				m.Value = strconv.FormatFloat(v, 'f', 4, 64)
			}
			note("    %s = %s (%s: %s)", m.Metric, m.Value, m.Outcome, m.Reason)
		}
	}
	if rb := ro.Status.Rollback; rb != nil {
		note("rollback trigger %s: %s", rb.Trigger, rb.Message)
	}
	times, err := w.EventTimes(ctx)
	if err != nil {
		return err
	}
	if started, done := times[vigilv1.ReasonRollingBack], times[vigilv1.ReasonRolledBack]; !started.IsZero() && !done.IsZero() {
		note("✓ rolled back: %s after the failed measurement, stable %s served all traffic again (Events RollingBack → RolledBack: %s)",
			done.Sub(times[vigilv1.ReasonAnalysisFailed]).Round(time.Millisecond), ro.Status.StableRevision, done.Sub(started).Round(time.Millisecond))
	}

	chapter("v4: an unsigned image is blocked before any pod starts")
	v4, err := w.Release(ctx, world.Version{Name: "v4", Unsigned: true})
	if err != nil {
		return err
	}
	note("committed %s (deploy: the Rollout names %s, which nobody signed), pushed", short(v4.Deploy), v4.Image)
	ro, err = w.Watch(ctx, 2*time.Minute, "v4 to be blocked", world.Blocked(v4))
	if err != nil {
		return err
	}
	var rss appsv1.ReplicaSetList
	if v := ro.Status.Verification; v != nil {
		if err := w.Client.List(ctx, &rss, client.InNamespace(w.Namespace), client.MatchingLabels{vigilv1.LabelPodTemplateHash: v.Revision}); err != nil {
			return err
		}
		note("✓ blocked: %s — %s", v.Reason, v.Message)
		note("  ReplicaSets of revision %s: %d; stable %s keeps serving", v.Revision, len(rss.Items), ro.Status.StableRevision)
	}

	if err := tellEvidence(ctx, w, out, v2Revision); err != nil {
		return err
	}

	chapter(fmt.Sprintf("The story took %s. Explore:", time.Since(start).Round(time.Second)))
	kc, _ := filepath.Abs(o.Kubeconfig)
	bin, _ := filepath.Abs(o.Bin)
	note("export KUBECONFIG=%s PATH=%s:%s:$PATH", kc, bin, assets)
	note("kubectl vigil -n %s get rollout web        # the tree; -w to watch it live", w.Namespace)
	note("kubectl -n %s get rollouts,approvals,analysisruns,replicasets,pods", w.Namespace)
	note("kubectl -n %s get rollout web -o yaml      # status: verification, analysis, rollback", w.Namespace)
	note("kubectl vigil -n %s evidence show web --revision REVISION   # what happened to a revision; verify, export, running", w.Namespace)
	note("kubectl -n %s get events --sort-by=.lastTimestamp", w.Namespace)
	note("Prometheus: %s/graph?g0.expr=sum+by(revision,code)(rate(demo_http_requests_total[30s]))", w.PrometheusURL)
	note("Vigil's metrics: %s", w.ControllerMetrics)
	note("logs: %s", filepath.Join(o.Dir, "logs"))
	note("Stop everything: make demo-down")
	return nil
}

func short(sha string) string {
	if len(sha) > 10 {
		return sha[:10]
	}
	return sha
}

// tellEvidence shows the evidence an SRE reads after the fact: v2's
// ReleaseRecord, and the whole chain verified.
func tellEvidence(ctx context.Context, w *world.World, out io.Writer, v2 string) error {
	fmt.Fprintf(out, "\n━━ The evidence: a hash-chained ReleaseRecord per revision, written before each action\n")
	for _, args := range [][]string{{"show", "web", "--revision", v2}, {"verify", "web"}} {
		fmt.Fprintf(out, "\n    kubectl vigil evidence %s -n %s\n", strings.Join(args, " "), w.Namespace)
		said, err := w.Vigil(ctx, append([]string{"evidence"}, args...)...)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "    %s\n", strings.ReplaceAll(strings.TrimSpace(said), "\n", "\n    "))
	}
	return nil
}
