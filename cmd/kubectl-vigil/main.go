// Command kubectl-vigil is the kubectl plugin for the people who release
// with Vigil: see a Rollout as a tree (live with -w), list Rollouts, and
// approve, reject, retry or abort a canary. Each decision is an Approval
// the plugin fills in from the Rollout's status; Vigil's admission webhook
// binds it to whoever runs the command. Put the binary on PATH (make build
// writes bin/kubectl-vigil) and run `kubectl vigil`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(genericiooptions.IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr})
	if err := root.ExecuteContext(ctx); err != nil {
		os.Exit(1)
	}
}

// app holds what every command shares: the kubeconfig flags every kubectl
// plugin has, and the output streams.
type app struct {
	flags   *genericclioptions.ConfigFlags
	streams genericiooptions.IOStreams
}

func newRoot(streams genericiooptions.IOStreams) *cobra.Command {
	a := &app{flags: genericclioptions.NewConfigFlags(true), streams: streams}
	root := &cobra.Command{
		Use:   "kubectl vigil",
		Short: "See and decide on Vigil Rollouts",
		Long: `See Vigil Rollouts and decide on their canaries.

Every decision (approve, reject, retry, abort) creates an Approval filled in
from the Rollout's status; Vigil's admission webhook records who made it,
from your credentials, and refuses it with the reason when it does not apply.`,
		SilenceUsage: true,
	}
	root.SetOut(streams.Out)
	root.SetErr(streams.ErrOut)
	a.flags.AddFlags(root.PersistentFlags())
	root.AddCommand(a.getCommand(), a.listCommand(),
		a.decisionCommand(approveCmd), a.decisionCommand(rejectCmd), a.decisionCommand(retryCmd), a.decisionCommand(abortCmd),
		a.evidenceCommand())
	return root
}

// client returns a client of the API server and the namespace to work in.
func (a *app) client() (client.WithWatch, string, error) {
	cfg, err := a.flags.ToRESTConfig()
	if err != nil {
		return nil, "", err
	}
	ns, _, err := a.flags.ToRawKubeConfigLoader().Namespace()
	if err != nil {
		return nil, "", err
	}
	c, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, "", err
	}
	return c, ns, nil
}

// rollout reads the Rollout named name in the namespace of the flags, and
// returns the client it used.
func (a *app) rollout(ctx context.Context, name string) (client.WithWatch, *vigilv1.Rollout, error) {
	c, ns, err := a.client()
	if err != nil {
		return nil, nil, err
	}
	ro := &vigilv1.Rollout{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, ro); err != nil {
		return nil, nil, fmt.Errorf("reading Rollout %s in namespace %s: %w", name, ns, err)
	}
	return c, ro, nil
}

// completeRollouts completes Rollout names in the namespace.
func (a *app) completeRollouts(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
	if len(args) > 0 {
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
	c, ns, err := a.client()
	if err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	var list vigilv1.RolloutList
	if err := c.List(cmd.Context(), &list, client.InNamespace(ns)); err != nil {
		return nil, cobra.ShellCompDirectiveError
	}
	names := make([]string, 0, len(list.Items))
	for _, ro := range list.Items {
		names = append(names, ro.Name)
	}
	return names, cobra.ShellCompDirectiveNoFileComp
}

func (a *app) printf(format string, args ...any) {
	fmt.Fprintf(a.streams.Out, format, args...)
}
