// Command bench measures Vigil on the local control plane (make
// dev-cluster: a real kube-apiserver, kube-controller-manager and
// kube-scheduler, with kwok nodes), with vigil-controller running out of
// cluster as its own process, the way `make demo` runs it:
//
//   - rollback reaction: from an abort (a Reject Approval's create) or a
//     failed analysis (the AnalysisRun's Failed verdict) to the stable
//     ReplicaSet at every replica and the canary's at 0 (spec), p50/p99;
//
//   - throughput: N Rollouts (replicas 1, setWeight 50 then a 1s pause)
//     created until all are Ready, then a new revision of each until all
//     are promoted: time, the controller's CPU seconds and RSS, and the
//     requests it sent (its client's rest_client_requests_total);
//
//   - optionally the RSS of the controller with many idle Rollouts.
//
//     bench --kubeconfig K --dir D --bin B --prometheus P --crds C --role R --webhooks W
//     [--aborts 30] [--failures 30] [--rollouts 1000] [--idle 0] [--controller-args ...]
//
// Every phase is bounded in time; a phase that does not finish fails the
// run with what it saw.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-dev/vigil/hack/demo/world"
)

func main() {
	o := world.Options{Namespace: "bench-world", Out: os.Stdout, DieWithParent: true}
	fs := flag.NewFlagSet("bench", flag.ExitOnError)
	o.Flags(fs, ".bench")
	args := fs.String("controller-args", "", "more vigil-controller flags, space-separated")
	b := bench{}
	fs.IntVar(&b.aborts, "aborts", 30, "aborts to time")
	fs.IntVar(&b.failures, "failures", 30, "failed analyses to time")
	fs.IntVar(&b.rollouts, "rollouts", 1000, "Rollouts created and promoted")
	fs.IntVar(&b.idle, "idle", 0, "idle Rollouts to measure the controller's RSS with (0: skip)")
	_ = fs.Parse(os.Args[1:])
	if *args != "" {
		o.ControllerArgs = strings.Fields(*args)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := b.run(ctx, o); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
	fmt.Printf("bench: done in %s\n", time.Since(start).Round(time.Second))
}
