package gitops

import (
	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/storer"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// ObjectsIn counts the objects stored in a fetched directory.
func ObjectsIn(dir string) int {
	st := filesystem.NewStorage(osfs.New(dir), cache.NewObjectLRUDefault())
	iter, err := st.IterEncodedObjects(plumbing.AnyObject)
	if err != nil {
		return -1
	}
	n := 0
	_ = iter.ForEach(func(plumbing.EncodedObject) error { n++; return nil })
	var _ storer.EncodedObjectIter = iter
	return n
}
