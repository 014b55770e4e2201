package rollout

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	vigilv1 "github.com/vigil-dev/vigil/api/v1alpha1"
)

// templateChecksum is the SHA-256 of the pod template as JSON. encoding/json
// writes struct fields in order and map keys sorted, so equal templates give
// equal checksums.
func templateChecksum(t *corev1.PodTemplateSpec) (string, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return "", fmt.Errorf("encoding the pod template: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// revisionHash is the short, name-safe revision of a template: an FNV-32a of
// its checksum and the collision count, encoded like Kubernetes' own
// pod-template-hash so it never spells a word.
func revisionHash(checksum string, collisionCount int32) string {
	h := fnv.New32a()
	h.Write([]byte(checksum))
	if collisionCount > 0 {
		var b [4]byte
		binary.LittleEndian.PutUint32(b[:], uint32(collisionCount))
		h.Write(b[:])
	}
	return rand.SafeEncodeString(strconv.FormatUint(uint64(h.Sum32()), 10))
}

// replicaSetName is the deterministic name of a revision's ReplicaSet.
func replicaSetName(rolloutName, revision string) string {
	return rolloutName + "-" + revision
}

// revisionOf is the revision a ReplicaSet of a Rollout runs.
func revisionOf(rs *appsv1.ReplicaSet) string {
	return rs.Labels[vigilv1.LabelPodTemplateHash]
}

// revisionNumber is the ReplicaSet's revision annotation (0 when missing).
func revisionNumber(rs *appsv1.ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[vigilv1.AnnotationRevision], 10, 64)
	return n
}

// newReplicaSet builds the ReplicaSet of a revision: the Rollout's template
// with the revision added to its labels and selector, owned by the Rollout.
// Each image in pinned runs as its verified repository@digest, never by tag.
func newReplicaSet(ro *vigilv1.Rollout, revision, checksum string, number int64, replicas int32, pinned map[string]string) *appsv1.ReplicaSet {
	tmpl := ro.Spec.Template.DeepCopy()
	for _, cs := range [][]corev1.Container{tmpl.Spec.InitContainers, tmpl.Spec.Containers} {
		for i := range cs {
			if p, ok := pinned[cs[i].Image]; ok && p != "" {
				cs[i].Image = p
			}
		}
	}
	labels := maps.Clone(tmpl.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	labels[vigilv1.LabelPodTemplateHash] = revision
	tmpl.Labels = labels

	selector := ro.Spec.Selector.DeepCopy()
	if selector.MatchLabels == nil {
		selector.MatchLabels = map[string]string{}
	}
	selector.MatchLabels[vigilv1.LabelPodTemplateHash] = revision

	rsLabels := maps.Clone(labels)
	rsLabels[vigilv1.LabelRollout] = ro.Name
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{
			Name:      replicaSetName(ro.Name, revision),
			Namespace: ro.Namespace,
			Labels:    rsLabels,
			Annotations: map[string]string{
				vigilv1.AnnotationRevision:         strconv.FormatInt(number, 10),
				vigilv1.AnnotationTemplateChecksum: checksum,
			},
			OwnerReferences: []metav1.OwnerReference{*metav1.NewControllerRef(ro, vigilv1.GroupVersion.WithKind("Rollout"))},
		},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: ptr.To(replicas),
			Selector: selector,
			Template: *tmpl,
		},
	}
}

// ownedBy tells whether the Rollout is the ReplicaSet's controller.
func ownedBy(o metav1.Object, ro *vigilv1.Rollout) bool {
	ref := metav1.GetControllerOf(o)
	return ref != nil && ref.UID == ro.UID
}

// specReplicas is a ReplicaSet's spec.replicas (1 when unset, as the API
// server defaults it).
func specReplicas(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return ptr.Deref(rs.Spec.Replicas, 1)
}

// available is how many of the ReplicaSet's pods are available for its
// current spec, never more than the spec: a status older than the spec
// counts none of the new pods, and pods beyond the spec are being deleted
// (kube-controller-manager counts them in the status it writes for the
// new generation until they are gone), so they are no capacity to rely on.
func available(rs *appsv1.ReplicaSet) int32 {
	if rs == nil {
		return 0
	}
	return min(rs.Status.AvailableReplicas, specReplicas(rs))
}

// fullyAvailable tells whether every pod the ReplicaSet wants is available.
func fullyAvailable(rs *appsv1.ReplicaSet) bool {
	return rs != nil && rs.Status.ObservedGeneration >= rs.Generation && rs.Status.AvailableReplicas >= specReplicas(rs)
}

// oldestFirst orders ReplicaSets by revision number.
func oldestFirst(sets []*appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	out := slices.Clone(sets)
	slices.SortFunc(out, func(a, b *appsv1.ReplicaSet) int {
		if c := revisionNumber(a) - revisionNumber(b); c != 0 {
			if c < 0 {
				return -1
			}
			return 1
		}
		return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
	})
	return out
}
