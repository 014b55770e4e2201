package gitops

import "github.com/vigil-dev/vigil/outcome"

// Limits bound what one fetch and render may cost. A repository past any of
// them is refused with ReasonLimitExceeded and a message naming the limit;
// nothing of it is applied.
type Limits struct {
	// PackBytes bounds the bytes downloaded for one fetch.
	PackBytes int64
	// Objects bounds the Git objects in the fetched pack.
	Objects int
	// FileBytes bounds one object (file, tree or commit) once inflated.
	FileBytes int64
	// TreeBytes bounds the sum of the files read from the tree.
	TreeBytes int64
	// Files bounds the files in the tree.
	Files int
	// Depth bounds how many directories deep a path may be.
	Depth int
	// Manifests bounds the objects rendered.
	Manifests int
}

// DefaultLimits fit a repository of manifests with room to spare: 64 MiB
// downloaded, 20,000 objects, 4 MiB per file, 64 MiB read in all, 10,000
// files, 32 levels deep and 5,000 objects rendered (what a GitSync's status
// can list).
func DefaultLimits() Limits {
	return Limits{
		PackBytes: 64 << 20,
		Objects:   20000,
		FileBytes: 4 << 20,
		TreeBytes: 64 << 20,
		Files:     10000,
		Depth:     32,
		Manifests: 5000,
	}
}

func (l Limits) exceeded(what string, got, limit int64) *outcome.Error {
	return outcome.Failf(ReasonLimitExceeded, "the repository exceeds the limit on %s: %d, at most %d", what, got, limit)
}
