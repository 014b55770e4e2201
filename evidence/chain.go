package evidence

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/cyberphone/json-canonicalization/go/src/webpki.org/jsoncanonicalizer"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// A Rollout's ReleaseRecords hold one hash chain: every entry, whatever
// record holds it, has a seq one above the entry before it and carries that
// entry's hash as prev. An entry's hash is SHA-256 over the RFC 8785
// canonical JSON of the entry without its hash, together with the
// namespace, Rollout and revision of the record that holds it, so an entry
// moved to another record or Rollout no longer verifies. The Rollout's
// status holds the head: the newest entry the controller acknowledged.

// hashed is what an entry's hash covers.
type hashed struct {
	Namespace string              `json:"namespace"`
	Rollout   string              `json:"rollout"`
	Revision  string              `json:"revision"`
	Entry     vigilv1.RecordEntry `json:"entry"`
}

// Hash is the hash entry e has as an entry of the record of revision of
// Rollout namespace/rollout. e's own hash is ignored.
func Hash(namespace, rollout, revision string, e vigilv1.RecordEntry) (string, error) {
	e.Hash = ""
	raw, err := json.Marshal(hashed{namespace, rollout, revision, e})
	if err != nil {
		return "", fmt.Errorf("encoding entry %d: %w", e.Seq, err)
	}
	canonical, err := jsoncanonicalizer.Transform(raw)
	if err != nil {
		return "", fmt.Errorf("canonicalising entry %d: %w", e.Seq, err)
	}
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// Append adds e to rec as the chain's next entry after head (nil for the
// chain's first entry), with its seq, prev and hash, and returns the new
// head.
func Append(rec *vigilv1.ReleaseRecord, head *vigilv1.RecordLink, e vigilv1.RecordEntry) (*vigilv1.RecordLink, error) {
	e.Seq, e.Prev = 1, ""
	if head != nil {
		e.Seq, e.Prev = head.Seq+1, head.Hash
	}
	h, err := Hash(rec.Namespace, rec.Spec.RolloutRef.Name, rec.Spec.Revision, e)
	if err != nil {
		return head, err
	}
	e.Hash = h
	rec.Spec.Entries = append(rec.Spec.Entries, e)
	return &vigilv1.RecordLink{Record: rec.Name, Seq: e.Seq, Hash: h}, nil
}

// Report is what Verify found.
type Report struct {
	// Records and Entries counted.
	Records, Entries int
	// Tail is the newest entry found.
	Tail *vigilv1.RecordLink
	// Unacknowledged counts entries newer than the head: written ahead of
	// a status patch that has not landed yet.
	Unacknowledged int
	// Broken is the first broken link; nil when the chain verifies.
	Broken *Break
}

// Break is a broken link of the chain.
type Break struct {
	// Record is the record to look at: the one holding the bad entry, or
	// the one that is missing.
	Record string
	// Seq of the entry at fault.
	Seq int64
	// Reason says what is wrong, for a person.
	Reason string
}

func (b *Break) Error() string {
	return fmt.Sprintf("record %s, entry %d: %s", b.Record, b.Seq, b.Reason)
}

// located is an entry and the record holding it.
type located struct {
	rec *vigilv1.ReleaseRecord
	e   vigilv1.RecordEntry
}

// Verify checks the chain of the records of Rollout namespace/rollout
// against head, the status's head (nil when the status holds none), from
// checkpoint (nil: from the start): every hash recomputes, seqs run without
// a gap from the checkpoint's (or 1), each prev is the hash before it, and
// the head is in the chain. Entries at or before the checkpoint (in kept
// records, or in pruned ones not yet deleted) are checked on their own:
// their hash, and their link to a kept predecessor. It names the first
// broken link.
func Verify(namespace, rollout string, head, checkpoint *vigilv1.RecordLink, records []vigilv1.ReleaseRecord) Report {
	var r Report
	var all, behind []located
	for i := range records {
		rec := &records[i]
		if rec.Namespace != namespace || rec.Spec.RolloutRef.Name != rollout {
			continue
		}
		r.Records++
		for _, e := range rec.Spec.Entries {
			if checkpoint == nil || e.Seq > checkpoint.Seq {
				all = append(all, located{rec, e})
			} else {
				behind = append(behind, located{rec, e})
			}
		}
	}
	r.Entries = len(all) + len(behind)
	slices.SortStableFunc(all, func(a, b located) int { return cmp.Compare(a.e.Seq, b.e.Seq) })
	byName := map[string]*vigilv1.ReleaseRecord{}
	for i := range records {
		byName[records[i].Name] = &records[i]
	}
	if r.Broken = linksBehind(namespace, behind); r.Broken != nil {
		return r
	}
	if r.Broken = links(namespace, checkpoint, all, byName); r.Broken != nil {
		return r
	}
	if n := len(all); n > 0 {
		last := all[n-1]
		r.Tail = &vigilv1.RecordLink{Record: last.rec.Name, Seq: last.e.Seq, Hash: last.e.Hash}
	} else if checkpoint != nil {
		r.Tail = checkpoint.DeepCopy()
	}
	if head != nil && checkpoint != nil && head.Seq <= checkpoint.Seq {
		if head.Seq == checkpoint.Seq && head.Hash != checkpoint.Hash {
			r.Broken = &Break{head.Record, head.Seq, "the Rollout's head and its evidence checkpoint disagree"}
		}
		r.Unacknowledged = len(all)
		return r
	}
	r.Broken, r.Unacknowledged = againstHead(head, r.Tail, all)
	return r
}

// links checks every entry's hash and its link to the entry before it,
// the first one's to the checkpoint.
func links(namespace string, checkpoint *vigilv1.RecordLink, all []located, byName map[string]*vigilv1.ReleaseRecord) *Break {
	var prev *located
	if checkpoint != nil {
		prev = &located{rec: &vigilv1.ReleaseRecord{}, e: vigilv1.RecordEntry{Seq: checkpoint.Seq, Hash: checkpoint.Hash}}
		prev.rec.Name = checkpoint.Record
	}
	for i := range all {
		l := &all[i]
		name := l.rec.Name
		want, err := Hash(namespace, l.rec.Spec.RolloutRef.Name, l.rec.Spec.Revision, l.e)
		switch {
		case err != nil:
			return &Break{name, l.e.Seq, err.Error()}
		case want != l.e.Hash:
			return &Break{name, l.e.Seq, "its hash does not match its content: the entry was changed after it was written"}
		case prev != nil && l.e.Seq == prev.e.Seq:
			return &Break{name, l.e.Seq, fmt.Sprintf("record %s holds an entry with the same seq", prev.rec.Name)}
		case prev == nil && l.e.Seq != 1, prev != nil && l.e.Seq != prev.e.Seq+1:
			from := int64(1)
			if prev != nil {
				from = prev.e.Seq + 1
			}
			return &Break{missingRecord(l, prev, byName), l.e.Seq, fmt.Sprintf("entries %d to %d are missing", from, l.e.Seq-1)}
		case prev == nil && l.e.Prev != "", prev != nil && l.e.Prev != prev.e.Hash:
			return &Break{name, l.e.Seq, fmt.Sprintf("it does not follow entry %d: prev is %q", l.e.Seq-1, l.e.Prev)}
		}
		prev = l
	}
	return nil
}

// linksBehind checks the entries kept from before the checkpoint (their
// records hold newer ones too): each hash recomputes, and each follows the
// entry before it where that one is kept.
func linksBehind(namespace string, behind []located) *Break {
	bySeq := map[int64]vigilv1.RecordEntry{}
	for _, l := range behind {
		bySeq[l.e.Seq] = l.e
	}
	for _, l := range behind {
		if want, err := Hash(namespace, l.rec.Spec.RolloutRef.Name, l.rec.Spec.Revision, l.e); err != nil || want != l.e.Hash {
			return &Break{l.rec.Name, l.e.Seq, "its hash does not match its content: the entry was changed after it was written"}
		}
		if p, ok := bySeq[l.e.Seq-1]; ok && l.e.Prev != p.Hash {
			return &Break{l.rec.Name, l.e.Seq, fmt.Sprintf("it does not follow entry %d: prev is %q", l.e.Seq-1, l.e.Prev)}
		}
	}
	return nil
}

// missingRecord names the record that held missing entries: one a
// record's previous link names and that is gone, else the record of the
// entry before the gap.
func missingRecord(l, prev *located, byName map[string]*vigilv1.ReleaseRecord) string {
	for _, r := range byName {
		if p := r.Spec.Previous; p != nil && byName[p.Record] == nil {
			return p.Record
		}
	}
	if prev != nil {
		return prev.rec.Name
	}
	return l.rec.Name
}

// againstHead checks that the status's head is an entry of the chain, and
// counts the entries written after it.
func againstHead(head, tail *vigilv1.RecordLink, all []located) (*Break, int) {
	if head == nil {
		return nil, len(all)
	}
	if tail == nil || tail.Seq < head.Seq {
		return &Break{head.Record, head.Seq, "the Rollout's head entry is missing: the newest entries were deleted"}, 0
	}
	i := slices.IndexFunc(all, func(l located) bool { return l.e.Seq == head.Seq })
	if i < 0 || all[i].e.Hash != head.Hash {
		return &Break{head.Record, head.Seq, fmt.Sprintf("the Rollout's head is %s, but the chain's entry %d hashes otherwise", short(head.Hash), head.Seq)}, 0
	}
	return nil, len(all) - 1 - i
}

// short is a hash's first 12 hex digits.
func short(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	return h[:min(len(h), 12)]
}
