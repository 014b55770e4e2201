// Package e2e drives Vigil's story end to end, as `make demo` tells it, on
// a local control plane with kwok nodes (hack/cluster) and the demo's
// world (hack/demo/world): a Git daemon, an OCI registry, a traffic
// exporter, Prometheus and vigil-controller, each a real process. Then it
// breaks things: Prometheus and the controller are killed mid-rollout, and
// the watched branch's history is rewritten.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-dev/vigil/hack/cluster"
	"github.com/vigil-dev/vigil/hack/demo/world"
)

var w *world.World

func TestMain(m *testing.M) { os.Exit(run(m)) }

func run(m *testing.M) (code int) {
	assets, prom := os.Getenv("KUBEBUILDER_ASSETS"), os.Getenv("VIGIL_PROMETHEUS")
	if assets == "" || prom == "" {
		fmt.Fprintln(os.Stderr, "e2e: KUBEBUILDER_ASSETS and VIGIL_PROMETHEUS must be set: run the suite with `make test`, which builds them")
		return 1
	}
	dir, err := os.MkdirTemp("", "vigil-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		return 1
	}
	fail := func(err error) int {
		fmt.Fprintf(os.Stderr, "e2e: %v\n(logs are in %s, which is kept)\n", err, dir)
		return 1
	}
	bin := filepath.Join(dir, "bin")
	if err := buildBinaries(bin); err != nil {
		return fail(err)
	}
	ctx := context.Background()
	c, err := cluster.Start(ctx, cluster.Options{Dir: filepath.Join(dir, "cluster"), BinDir: assets, DieWithParent: true})
	if err != nil {
		return fail(err)
	}
	story, err := os.Create(filepath.Join(dir, "story.log"))
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := stopAll(dir, c); err != nil {
			code = fail(fmt.Errorf("stopping: %w", err))
			return
		}
		if code == 0 {
			_ = os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: the story and every server's log are in %s\n", dir)
		}
	}()
	w, err = world.Up(ctx, world.Options{
		Dir:        filepath.Join(dir, "world"),
		Kubeconfig: c.Kubeconfig,
		Bin:        bin,
		Prometheus: prom,
		CRDs:       "../config/crd/bases",
		Role:       "../config/rbac/role.yaml",
		Webhooks:   "../config/webhook/manifests.yaml",
		Out:        story,
		// A test timeout skips the cleanup below; the kernel then stops them.
		DieWithParent: true,
	})
	if err != nil {
		return fail(err)
	}
	code = m.Run()
	if err := invariantsKept(w); err != nil {
		return fail(err)
	}
	return code
}

// invariantsKept fails when the controller's log shows a broken invariant:
// any is a bug, whatever the story asserted.
func invariantsKept(w *world.World) error {
	broken, err := w.InvariantViolations()
	switch {
	case err != nil:
		return fmt.Errorf("reading the controller's log for invariant violations: %w", err)
	case len(broken) > 0:
		return fmt.Errorf("safety invariants were violated (vigil_invariant_violations_total):\n  %s", strings.Join(broken, "\n  "))
	}
	return nil
}

// within bounds each wait of the story.
const within = 3 * time.Minute

// buildBinaries builds vigil-controller and the demo into bin.
func buildBinaries(bin string) error {
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/vigil-controller", "./cmd/kubectl-vigil", "./hack/demo")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building the controller and the demo: %v: %s", err, out)
	}
	return nil
}

// stopAll stops the world's servers, then the cluster.
func stopAll(dir string, c *cluster.Cluster) error {
	err := world.Down(filepath.Join(dir, "world"))
	if serr := c.Stop(); err == nil {
		err = serr
	}
	return err
}
