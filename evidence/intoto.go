package evidence

import (
	"encoding/json"
	"fmt"
	"strings"

	intoto "github.com/in-toto/attestation/go/v1"
	"google.golang.org/protobuf/types/known/structpb"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// PredicateType is the in-toto predicate type of an exported ReleaseRecord
// (docs/evidence.md describes it).
const PredicateType = "https://vigil.dev/ReleaseRecord/v1"

// Predicate is what an exported ReleaseRecord states: the record as
// stored, and the Rollout it belongs to. Each entry keeps its seq, prev and
// hash, so the statement can be checked against the chain without the
// cluster.
type Predicate struct {
	Namespace string                    `json:"namespace"`
	Rollout   string                    `json:"rollout"`
	Record    string                    `json:"record"`
	Spec      vigilv1.ReleaseRecordSpec `json:"spec"`
}

// Statement is rec as an in-toto Statement (v1). Its subjects are each
// image of the revision that runs by digest, and the record's newest entry,
// named vigil.dev/releaserecord/NAMESPACE/ROLLOUT/REVISION with that
// entry's hash as its digest.
func Statement(rec *vigilv1.ReleaseRecord) (*intoto.Statement, error) {
	n := len(rec.Spec.Entries)
	if n == 0 {
		return nil, fmt.Errorf("ReleaseRecord %s has no entries", rec.Name)
	}
	subjects := []*intoto.ResourceDescriptor{{
		Name:   fmt.Sprintf("vigil.dev/releaserecord/%s/%s/%s", rec.Namespace, rec.Spec.RolloutRef.Name, rec.Spec.Revision),
		Digest: map[string]string{"sha256": strings.TrimPrefix(rec.Spec.Entries[n-1].Hash, "sha256:")},
	}}
	for _, e := range rec.Spec.Entries {
		for _, img := range e.Images {
			if alg, hex, ok := strings.Cut(img.Digest, ":"); ok {
				subjects = append(subjects, &intoto.ResourceDescriptor{Name: strings.Split(img.Image, "@")[0], Digest: map[string]string{alg: hex}})
			}
		}
	}
	spec := rec.Spec
	spec.Attestation = "" // what is signed is the record without its signature
	raw, err := json.Marshal(Predicate{Namespace: rec.Namespace, Rollout: rec.Spec.RolloutRef.Name, Record: rec.Name, Spec: spec})
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	pred, err := structpb.NewStruct(m)
	if err != nil {
		return nil, fmt.Errorf("encoding the predicate: %w", err)
	}
	st := &intoto.Statement{Type: intoto.StatementTypeUri, Subject: subjects, PredicateType: PredicateType, Predicate: pred}
	return st, st.Validate()
}
