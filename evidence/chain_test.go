package evidence

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// chain builds the records of Rollout team-a/checkout: revisions a, b and
// c, three entries each, and returns them with the head.
func chain(t *testing.T) ([]vigilv1.ReleaseRecord, *vigilv1.RecordLink) {
	t.Helper()
	var head *vigilv1.RecordLink
	var out []vigilv1.ReleaseRecord
	at := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, rev := range []string{"a", "b", "c"} {
		rec := vigilv1.ReleaseRecord{ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "checkout-" + rev},
			Spec: vigilv1.ReleaseRecordSpec{RolloutRef: vigilv1.LocalObjectReference{Name: "checkout"}, Revision: rev}}
		if head != nil {
			rec.Spec.Previous = head.DeepCopy()
		}
		for _, typ := range []vigilv1.EntryType{vigilv1.EntryObserved, vigilv1.EntryPromotion, vigilv1.EntryPromotion} {
			at = at.Add(time.Second)
			var err error
			if head, err = Append(&rec, head, vigilv1.RecordEntry{Type: typ, Time: metav1.NewMicroTime(at), Message: "revision " + rev}); err != nil {
				t.Fatal(err)
			}
		}
		out = append(out, rec)
	}
	return out, head
}

func TestAnIntactChainVerifies(t *testing.T) {
	records, head := chain(t)
	r := Verify("team-a", "checkout", head, nil, records)
	if r.Broken != nil || r.Entries != 9 || r.Records != 3 || r.Tail.Seq != 9 || r.Unacknowledged != 0 {
		t.Fatalf("report %+v, broken %v", r, r.Broken)
	}
	// An entry written ahead of the status patch is not yet acknowledged.
	older := &vigilv1.RecordLink{Record: "checkout-c", Seq: 8, Hash: records[2].Spec.Entries[1].Hash}
	if r := Verify("team-a", "checkout", older, nil, records); r.Broken != nil || r.Unacknowledged != 1 {
		t.Fatalf("report %+v, broken %v", r, r.Broken)
	}
}

func TestTamperingIsNamed(t *testing.T) {
	cases := []struct {
		name   string
		tamper func(records []vigilv1.ReleaseRecord, head *vigilv1.RecordLink) []vigilv1.ReleaseRecord
		record string
		seq    int64
		reason string
	}{
		{"an edited entry", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			rs[1].Spec.Entries[1].Message = "nothing to see"
			return rs
		}, "checkout-b", 5, "does not match its content"},
		{"an entry moved to another revision", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			rs[1].Spec.Revision = "z"
			return rs
		}, "checkout-b", 4, "does not match its content"},
		{"a deleted middle record", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			return []vigilv1.ReleaseRecord{rs[0], rs[2]}
		}, "checkout-b", 7, "entries 4 to 6 are missing"},
		{"a deleted first record", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			return rs[1:]
		}, "checkout-a", 4, "entries 1 to 3 are missing"},
		{"a deleted newest record", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			return rs[:2]
		}, "checkout-c", 9, "head entry is missing"},
		{"a rewritten newest record", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			c := &rs[2]
			c.Spec.Entries = c.Spec.Entries[:2]
			head := &vigilv1.RecordLink{Seq: 8, Hash: c.Spec.Entries[1].Hash}
			if _, err := Append(c, head, vigilv1.RecordEntry{Type: vigilv1.EntryRollback, Message: "forged"}); err != nil {
				panic(err)
			}
			return rs
		}, "checkout-c", 9, "hashes otherwise"},
		{"an entry that skips its predecessor", func(rs []vigilv1.ReleaseRecord, _ *vigilv1.RecordLink) []vigilv1.ReleaseRecord {
			e := &rs[2].Spec.Entries[0]
			e.Prev = rs[0].Spec.Entries[0].Hash
			e.Hash, _ = Hash("team-a", "checkout", "c", *e)
			return rs
		}, "checkout-c", 7, "does not follow entry 6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			records, head := chain(t)
			r := Verify("team-a", "checkout", head, nil, tc.tamper(records, head))
			b := r.Broken
			if b == nil {
				t.Fatalf("tampering not detected: %+v", r)
			}
			if b.Record != tc.record || b.Seq != tc.seq || !strings.Contains(b.Reason, tc.reason) {
				t.Fatalf("broken link %v, want record %s entry %d: %s", b, tc.record, tc.seq, tc.reason)
			}
		})
	}
}

func TestARecordExportsAsAnInTotoStatementWhoseEntriesStillVerify(t *testing.T) {
	records, head := chain(t)
	rec := records[2]
	rec.Spec.Entries[0].Images = []vigilv1.ImageRecord{{Container: "app", Image: "registry.example/checkout:v3", Digest: "sha256:" + strings.Repeat("ab", 32)}}
	rec.Spec.Entries[0].Hash, _ = Hash("team-a", "checkout", "c", rec.Spec.Entries[0])
	st, err := Statement(&rec)
	if err != nil {
		t.Fatal(err)
	}
	if st.GetPredicateType() != PredicateType || len(st.GetSubject()) != 2 || st.GetSubject()[1].GetDigest()["sha256"] != strings.Repeat("ab", 32) {
		t.Fatalf("statement %v", st)
	}
	raw, err := protojson.Marshal(st.GetPredicate())
	if err != nil {
		t.Fatal(err)
	}
	var p Predicate
	if err := json.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	got := vigilv1.ReleaseRecord{ObjectMeta: metav1.ObjectMeta{Namespace: p.Namespace, Name: p.Record}, Spec: p.Spec}
	for i, e := range got.Spec.Entries {
		if h, _ := Hash(p.Namespace, p.Rollout, got.Spec.Revision, e); h != e.Hash {
			t.Fatalf("entry %d read back from the statement hashes to %s, not %s", i, h, e.Hash)
		}
	}
	if last := got.Spec.Entries[len(got.Spec.Entries)-1].Hash; last != "sha256:"+st.GetSubject()[0].GetDigest()["sha256"] || head.Seq != 9 {
		t.Fatalf("the record's subject is not its newest entry")
	}
}

func TestAChainPrunedBehindACheckpointStillVerifies(t *testing.T) {
	records, head := chain(t)
	a := records[0]
	cp := &vigilv1.RecordLink{Record: a.Name, Seq: 3, Hash: a.Spec.Entries[2].Hash}
	kept := records[1:]
	if r := Verify("team-a", "checkout", head, cp, kept); r.Broken != nil || r.Entries != 6 {
		t.Fatalf("report %+v, broken %v", r, r.Broken)
	}
	if r := Verify("team-a", "checkout", head, nil, kept); r.Broken == nil {
		t.Fatal("without the checkpoint the pruned record is missing")
	}
	if r := Verify("team-a", "checkout", head, cp, kept[1:]); r.Broken == nil || !strings.Contains(r.Broken.Reason, "entries 4 to 6 are missing") {
		t.Fatalf("a record deleted after the checkpoint must show: %v", r.Broken)
	}
	forged := *cp
	forged.Hash = "sha256:" + strings.Repeat("0", 64)
	if r := Verify("team-a", "checkout", head, &forged, kept); r.Broken == nil || r.Broken.Seq != 4 {
		t.Fatalf("a checkpoint that is not the entry before the kept ones must show: %v", r.Broken)
	}
}
