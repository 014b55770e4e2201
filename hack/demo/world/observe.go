package world

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// Rollout reads the app's Rollout.
func (w *World) Rollout(ctx context.Context) (*vigilv1.Rollout, error) {
	ro := &vigilv1.Rollout{}
	return ro, w.Client.Get(ctx, client.ObjectKey{Namespace: w.Namespace, Name: "web"}, ro)
}

// Watch polls the Rollout every 200 ms until done says it is where the
// story wants it, printing a line whenever what it shows changes (phase,
// step, weights, analysis, pending approval, message). It fails after
// timeout, naming what it last saw.
func (w *World) Watch(ctx context.Context, timeout time.Duration, what string, done func(*vigilv1.Rollout) bool) (*vigilv1.Rollout, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	last, start := "", time.Now()
	for {
		ro, err := w.Rollout(ctx)
		if err == nil {
			if s := Summary(ro); s != last {
				fmt.Fprintf(w.o.Out, "    %5.1fs  %s\n", time.Since(start).Seconds(), s)
				last = s
			}
			if done(ro) {
				return ro, nil
			}
		}
		select {
		case <-ctx.Done():
			if last == "" && err != nil {
				last = err.Error()
			}
			return ro, fmt.Errorf("waiting %s for %s; last seen: %s", timeout, what, last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Summary is one line of what the Rollout shows.
func Summary(ro *vigilv1.Rollout) string {
	st := ro.Status
	if st.Phase == "" {
		return "(no status yet)"
	}
	parts := []string{fmt.Sprintf("%-11s", st.Phase)}
	if st.CurrentStepIndex != nil && st.CanaryRevision != "" {
		parts = append(parts, fmt.Sprintf("step %d/%d", *st.CurrentStepIndex, stepsOf(ro)))
	}
	if st.CanaryRevision != "" {
		parts = append(parts, fmt.Sprintf("canary %s %d%%", st.CanaryRevision, st.CanaryWeight))
	}
	if st.StableRevision != "" {
		parts = append(parts, fmt.Sprintf("stable %s", st.StableRevision))
	}
	if a := st.Analysis; a != nil && a.Revision == st.CanaryRevision && st.CanaryRevision != "" {
		v := string(a.Verdict)
		if v == "" {
			v = "Running"
		}
		parts = append(parts, fmt.Sprintf("analysis %s", v))
	}
	if p := st.PendingApproval; p != nil {
		parts = append(parts, fmt.Sprintf("waits for approval of step %d", p.Step))
	}
	line := strings.Join(parts, " · ")
	if st.Message != "" {
		line += " — " + st.Message
	}
	return line
}

func stepsOf(ro *vigilv1.Rollout) int { return len(ro.Spec.Strategy.Canary.Steps) }

// Approve approves what the Rollout waits for as an SRE does, with the
// kubectl plugin (kubectl vigil approve, or retry), and returns what it
// printed.
func (w *World) Approve(ctx context.Context, ro *vigilv1.Rollout, reason string) (string, error) {
	verb := "approve"
	if p := ro.Status.PendingApproval; p != nil && p.Effect != vigilv1.EffectPassStep {
		verb = "retry" // a paused analysis runs again, a rolled-back revision is retried
	}
	return w.Vigil(ctx, verb, ro.Name, "--reason", reason, "--wait", "20s")
}

// Vigil runs kubectl vigil with args (a command first) against the world's
// cluster and namespace, and returns what it printed.
func (w *World) Vigil(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, w.Plugin(), append(args, "--kubeconfig", w.o.Kubeconfig, "-n", w.Namespace)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("kubectl vigil %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// Plugin is the kubectl-vigil binary.
func (w *World) Plugin() string { return filepath.Join(w.o.Bin, "kubectl-vigil") }

// Applied: the Rollout's template names rel's image, so GitSync applied
// its deploy commit.
func Applied(rel *Release) func(*vigilv1.Rollout) bool {
	return func(ro *vigilv1.Rollout) bool {
		c := ro.Spec.Template.Spec.Containers
		return len(c) > 0 && c[0].Image == rel.Image
	}
}

// Promoted: rel is applied and its revision is stable and Ready.
func Promoted(rel *Release) func(*vigilv1.Rollout) bool {
	return func(ro *vigilv1.Rollout) bool {
		return Applied(rel)(ro) && ro.Status.Phase == vigilv1.RolloutPhasePromoted &&
			ro.Status.CanaryRevision == "" && ro.Spec.Replicas != nil && ro.Status.ReadyReplicas == *ro.Spec.Replicas &&
			conditionTrue(ro, vigilv1.ConditionReady)
	}
}

// WaitsForApproval: rel's canary waits for an Approval.
func WaitsForApproval(rel *Release) func(*vigilv1.Rollout) bool {
	return func(ro *vigilv1.Rollout) bool {
		return Applied(rel)(ro) && ro.Status.PendingApproval != nil && ro.Status.CanaryRevision != "" &&
			ro.Status.PendingApproval.Revision == ro.Status.CanaryRevision
	}
}

// RolledBack: rel was rolled back and stable serves everything again.
func RolledBack(rel *Release) func(*vigilv1.Rollout) bool {
	return func(ro *vigilv1.Rollout) bool {
		return Applied(rel)(ro) && ro.Status.Phase == vigilv1.RolloutPhaseRolledBack
	}
}

// Blocked: rel was refused before any pod.
func Blocked(rel *Release) func(*vigilv1.Rollout) bool {
	return func(ro *vigilv1.Rollout) bool {
		return Applied(rel)(ro) && ro.Status.Phase == vigilv1.RolloutPhaseBlocked
	}
}

func conditionTrue(ro *vigilv1.Rollout, t string) bool {
	for _, c := range ro.Status.Conditions.Conditions {
		if c.Type == t {
			return c.Status == metav1.ConditionTrue && c.ObservedGeneration == ro.Generation
		}
	}
	return false
}

// EventTimes are the times (to the microsecond) of the latest Event of
// each reason the controller recorded for the Rollout.
func (w *World) EventTimes(ctx context.Context) (map[string]time.Time, error) {
	var evs eventsv1.EventList
	if err := w.Client.List(ctx, &evs, client.InNamespace(w.Namespace)); err != nil {
		return nil, err
	}
	times := map[string]time.Time{}
	for _, e := range evs.Items {
		if e.Regarding.Kind != "Rollout" || e.Regarding.Name != "web" {
			continue
		}
		if t := e.EventTime.Time; t.After(times[e.Reason]) {
			times[e.Reason] = t
		}
	}
	return times, nil
}

// WaitForTraffic waits until Prometheus answers a rate of revision's
// requests: after a restart it scrapes again only a few seconds after it
// says it is ready, and a rate needs two samples.
func (w *World) WaitForTraffic(ctx context.Context, revision string, timeout time.Duration) error {
	q := url.Values{"query": {fmt.Sprintf(`sum(rate(demo_http_requests_total{namespace=%q,revision=%q}[10s]))`, w.Namespace, revision)}}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		var answer struct {
			Data struct {
				Result []json.RawMessage `json:"result"`
			} `json:"data"`
		}
		resp, err := http.Get(w.PrometheusURL + "/api/v1/query?" + q.Encode())
		if err == nil {
			err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&answer)
			_ = resp.Body.Close()
			if err == nil && len(answer.Data.Result) > 0 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus has no traffic of revision %s after %s", revision, timeout)
		case <-time.After(250 * time.Millisecond):
		}
	}
}
