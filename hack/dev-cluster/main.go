// Command dev-cluster starts and stops the local control plane that
// `make dev-cluster` and `make dev-cluster-down` manage.
//
//	dev-cluster up   --bin-dir DIR [--dir .dev-cluster] [--nodes 3]
//	dev-cluster down [--dir .dev-cluster]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/vigil-dev/vigil/hack/cluster"
)

func main() {
	if len(os.Args) < 2 || (os.Args[1] != "up" && os.Args[1] != "down") {
		fmt.Fprintln(os.Stderr, "usage: dev-cluster up --bin-dir DIR [--dir DIR] [--nodes N] | down [--dir DIR]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("dev-cluster "+os.Args[1], flag.ExitOnError)
	dir := fs.String("dir", ".dev-cluster", "directory for the cluster's state, logs and kubeconfig")
	binDir := fs.String("bin-dir", "", "directory holding etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (hack/tools.sh assets)")
	nodes := fs.Int("nodes", 3, "number of fake kwok nodes")
	_ = fs.Parse(os.Args[2:])

	if os.Args[1] == "down" {
		if err := cluster.StopDir(*dir); err != nil {
			fmt.Fprintf(os.Stderr, "dev-cluster down: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("cluster: stopped")
		return
	}
	if *binDir == "" {
		fmt.Fprintln(os.Stderr, "dev-cluster up: --bin-dir is required (run `make dev-cluster`, which builds the binaries)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := cluster.Start(ctx, cluster.Options{Dir: *dir, BinDir: *binDir, Nodes: *nodes, Progress: os.Stdout}); err != nil {
		fmt.Fprintf(os.Stderr, "dev-cluster up: %v\n", err)
		os.Exit(1)
	}
}
