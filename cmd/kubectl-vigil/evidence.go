package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/controller-runtime/pkg/client"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
	proof "github.com/vigil-dev/vigil/evidence"
)

// errBroken makes verify exit non-zero once it has said what is broken.
var errBroken = errors.New("the evidence chain does not verify")

func (a *app) evidenceCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Read and check a Rollout's ReleaseRecords: the hash-chained evidence of each revision",
	}
	var key string
	verify := &cobra.Command{
		Use:               "verify ROLLOUT [--key PUBLIC.pem]",
		Short:             "Check the Rollout's whole evidence chain and name the first broken link; with --key, each finalised record's signature too",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRollouts,
		RunE:              func(cmd *cobra.Command, args []string) error { return a.verify(cmd.Context(), args[0], key) },
	}
	verify.Flags().StringVar(&key, "key", "", "PEM public key of the controller's --evidence-signing-key: every finalised record must carry an attestation it verifies")
	var revision string
	var signed bool
	show := &cobra.Command{
		Use:               "show ROLLOUT [--revision R]",
		Short:             "Print the record of a revision (default: the newest) for a person",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRollouts,
		RunE:              func(cmd *cobra.Command, args []string) error { return a.show(cmd.Context(), args[0], revision) },
	}
	show.Flags().StringVar(&revision, "revision", "", "the revision (pod-template hash) whose record to print")
	export := &cobra.Command{
		Use:               "export ROLLOUT [--revision R] [--signed]",
		Short:             "Print a record (default: the newest) as an in-toto Statement, predicate type " + proof.PredicateType,
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRollouts,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.export(cmd.Context(), args[0], revision, signed)
		},
	}
	export.Flags().StringVar(&revision, "revision", "", "the revision (pod-template hash) whose record to export")
	export.Flags().BoolVar(&signed, "signed", false, "print the Sigstore bundle the controller signed the record with when it finalised it, instead of the bare Statement")
	running := &cobra.Command{
		Use:               "running ROLLOUT",
		Short:             "List each running pod's images with the record, commit, signer and approvers that put them there; flag any without",
		Args:              cobra.ExactArgs(1),
		ValidArgsFunction: a.completeRollouts,
		RunE:              func(cmd *cobra.Command, args []string) error { return a.running(cmd.Context(), args[0]) },
	}
	cmd.AddCommand(verify, show, export, running)
	return cmd
}

// records reads the Rollout and its ReleaseRecords, oldest first.
func (a *app) records(ctx context.Context, name string) (*vigilv1.Rollout, []vigilv1.ReleaseRecord, error) {
	c, ro, err := a.rollout(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	var list vigilv1.ReleaseRecordList
	if err := c.List(ctx, &list, client.InNamespace(ro.Namespace), client.MatchingLabels{vigilv1.LabelRollout: ro.Name}); err != nil {
		return nil, nil, fmt.Errorf("listing the ReleaseRecords of Rollout %s: %w", name, err)
	}
	recs := list.Items
	slices.SortFunc(recs, func(x, y vigilv1.ReleaseRecord) int { return cmp.Compare(firstSeq(x), firstSeq(y)) })
	return ro, recs, nil
}

func firstSeq(r vigilv1.ReleaseRecord) int64 {
	if len(r.Spec.Entries) == 0 {
		return 0
	}
	return r.Spec.Entries[0].Seq
}

// verify checks the chain, and with a key every finalised record's
// attestation, and prints what it found.
func (a *app) verify(ctx context.Context, name, key string) error {
	ro, recs, err := a.records(ctx, name)
	if err != nil {
		return err
	}
	rep := proof.Verify(ro.Namespace, ro.Name, ro.Status.Evidence, ro.Status.EvidenceCheckpoint, recs)
	if rep.Broken == nil && key != "" {
		pub, err := os.ReadFile(key)
		if err != nil {
			return err
		}
		rep.Broken = attestations(recs, pub)
	}
	if b := rep.Broken; b != nil {
		a.printf("BROKEN: record %s, entry %d: %s\n", b.Record, b.Seq, b.Reason)
		a.printf("Checked %d records with %d entries of Rollout %s.\n", rep.Records, rep.Entries, ro.Name)
		return errBroken
	}
	if rep.Tail == nil {
		a.printf("Rollout %s has no evidence yet.\n", ro.Name)
		return nil
	}
	from := "entry 1"
	if cp := ro.Status.EvidenceCheckpoint; cp != nil {
		from = fmt.Sprintf("the checkpoint at entry %d (older records pruned beyond releaseRecordLimit)", cp.Seq)
	}
	a.printf("OK: %d records, %d entries of Rollout %s; the chain runs unbroken from %s to entry %d (%s, in %s).\n",
		rep.Records, rep.Entries, ro.Name, from, rep.Tail.Seq, rep.Tail.Hash, rep.Tail.Record)
	if rep.Unacknowledged > 0 {
		a.printf("%d entries are newer than the Rollout's head: written ahead of a status update that has not landed yet.\n", rep.Unacknowledged)
	}
	return nil
}

// attestations checks the attestation of every finalised record.
func attestations(recs []vigilv1.ReleaseRecord, pub []byte) *proof.Break {
	for i := range recs {
		r := &recs[i]
		if !r.Spec.Finalized {
			continue
		}
		if err := proof.CheckAttestation(r, pub); err != nil {
			return &proof.Break{Record: r.Name, Seq: r.Spec.Entries[len(r.Spec.Entries)-1].Seq, Reason: "attestation: " + err.Error()}
		}
	}
	return nil
}

// show prints the record of revision (default: the newest record).
func (a *app) show(ctx context.Context, name, revision string) error {
	rec, err := a.record(ctx, name, revision)
	if err != nil {
		return err
	}
	printRecord(a.streams.Out, rec)
	return nil
}

// export prints the record of revision as an in-toto Statement, or with
// signed the bundle the controller signed it with.
func (a *app) export(ctx context.Context, name, revision string, signed bool) error {
	rec, err := a.record(ctx, name, revision)
	if err != nil {
		return err
	}
	if signed {
		if rec.Spec.Attestation == "" {
			return fmt.Errorf("ReleaseRecord %s carries no attestation: it is not finalised, or the controller runs without --evidence-signing-key", rec.Name)
		}
		a.printf("%s\n", rec.Spec.Attestation)
		return nil
	}
	st, err := proof.Statement(rec)
	if err != nil {
		return fmt.Errorf("exporting ReleaseRecord %s: %w", rec.Name, err)
	}
	raw, err := protojson.Marshal(st)
	if err != nil {
		return err
	}
	// protojson's own layout is deliberately unstable; print a stable one.
	var out bytes.Buffer
	if err := json.Indent(&out, raw, "", "  "); err != nil {
		return err
	}
	a.printf("%s\n", out.String())
	return nil
}

// record is the newest record of revision (default: the newest record).
func (a *app) record(ctx context.Context, name, revision string) (*vigilv1.ReleaseRecord, error) {
	ro, recs, err := a.records(ctx, name)
	if err != nil {
		return nil, err
	}
	i := len(recs) - 1
	for revision != "" && i >= 0 && recs[i].Spec.Revision != revision {
		i--
	}
	if i < 0 {
		return nil, fmt.Errorf("Rollout %s has no ReleaseRecord of revision %q", ro.Name, revision)
	}
	return &recs[i], nil
}

// printRecord prints a record for a person: a header, then one line per
// entry with what it says.
func printRecord(out io.Writer, r *vigilv1.ReleaseRecord) {
	state := "open"
	if r.Spec.Finalized {
		state = "finalised, " + string(r.Spec.Outcome)
	}
	if r.Spec.Attestation != "" {
		state += ", signed"
	}
	fmt.Fprintf(out, "ReleaseRecord %s: Rollout %s, revision %s (%s)\n", r.Name, r.Spec.RolloutRef.Name, r.Spec.Revision, state)
	if p := r.Spec.Previous; p != nil {
		fmt.Fprintf(out, "Follows entry %d (%s) of record %s\n", p.Seq, p.Hash, p.Record)
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tENTRY\tWHAT")
	for _, e := range r.Spec.Entries {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", e.Seq, e.Time.UTC().Format("2006-01-02 15:04:05.000"), strings.TrimSpace(string(e.Type)+" "+headline(e)), detail(e))
	}
	_ = tw.Flush()
}

// headline is the word after an entry's type: a result, decision or state.
func headline(e vigilv1.RecordEntry) string {
	switch {
	case e.Verification != nil:
		return string(e.Verification.Result)
	case e.Analysis != nil:
		return string(e.Analysis.Verdict)
	case e.Approval != nil:
		return string(e.Approval.Decision)
	case e.Type == vigilv1.EntryFinalized:
		return string(e.Outcome)
	}
	return string(e.State)
}

// detail says what an entry records, on one line.
func detail(e vigilv1.RecordEntry) string {
	var parts []string
	add := func(format string, args ...any) { parts = append(parts, fmt.Sprintf(format, args...)) }
	if e.GitCommit != "" {
		add("commit %s", e.GitCommit)
	}
	for _, img := range e.Images {
		add("%s=%s@%s", img.Container, strings.Split(img.Image, "@")[0], or(img.Digest, "(no digest)"))
	}
	if v := e.Verification; v != nil {
		add("%s under policy %s", v.Reason, v.PolicyHash)
		for _, img := range v.Images {
			add("%s signed by %s, built by %s from %s@%s", or(img.Pinned, img.Image), or(img.Signer, "-"), or(img.Builder, "-"), or(img.SourceRepository, "-"), or(img.SourceCommit, "-"))
		}
	}
	if an := e.Analysis; an != nil {
		add("run %s (attempt %d)", an.Run, an.Attempt)
		for _, m := range an.Measurements {
			add("%s", strings.TrimSpace(fmt.Sprintf("%s=%s %s %s", m.Metric, or(m.Value, "-"), m.Outcome, m.Reason)))
		}
	}
	if ap := e.Approval; ap != nil {
		add("by %s (admitted %s), scope %s", ap.User, ap.AdmittedAt.UTC().Format("15:04:05.000"), or(string(ap.Scope), "Step"))
		if ap.Reason != "" {
			add("reason: %s", ap.Reason)
		}
	}
	if e.Trigger != "" {
		add("trigger %s", e.Trigger)
	}
	if e.Step != nil {
		add("step %d", *e.Step)
	}
	if e.Message != "" && e.Approval == nil {
		add("%s", e.Message)
	}
	return strings.Join(parts, "; ")
}

func or(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}
