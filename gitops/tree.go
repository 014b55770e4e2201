package gitops

import (
	"errors"
	"io"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/vigil-dev/vigil/outcome"
)

// maxSymlinkHops bounds how many symlinks one path may pass through.
const maxSymlinkHops = 8

// Tree copies the commit's files into an in-memory file system rooted at
// "/", within the limits on files, bytes and depth. Nothing of the
// repository touches the disk beyond Git's own object store, and nothing
// outside the repository can be reached through it: a symlink is replaced
// by the file it names inside the repository, and one that points outside,
// or at a directory, refuses the whole tree. Submodules are not followed.
func (s *Snapshot) Tree() (filesys.FileSystem, error) {
	root, err := s.commit.Tree()
	if err != nil {
		return nil, outcome.Failf(ReasonFetchFailed, "reading the tree of %s: %v", s.Commit, err)
	}
	fs := filesys.MakeFsInMemory()
	t := &treeReader{s: s, root: root, fs: fs}
	w := object.NewTreeWalker(root, true, nil)
	defer w.Close()
	var links []string
	for {
		name, entry, err := w.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, outcome.Failf(ReasonFetchFailed, "walking the tree of %s: %v", s.Commit, err)
		}
		if d := strings.Count(name, "/") + 1; d > s.limits.Depth {
			return nil, s.limits.exceeded("path depth", int64(d), int64(s.limits.Depth))
		}
		switch entry.Mode {
		case filemode.Dir:
			if err := fs.MkdirAll("/" + name); err != nil {
				return nil, err
			}
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			if err := t.copy(name, entry.Hash); err != nil {
				return nil, err
			}
		case filemode.Symlink:
			links = append(links, name)
		}
	}
	for _, name := range links {
		target, err := t.resolve(name)
		if err != nil {
			return nil, err
		}
		if err := t.copy(name, target); err != nil {
			return nil, err
		}
	}
	return fs, nil
}

type treeReader struct {
	s     *Snapshot
	root  *object.Tree
	fs    filesys.FileSystem
	files int
	bytes int64
}

// copy reads one blob into the file system, counting it against the limits
// before reading it.
func (t *treeReader) copy(name string, h plumbing.Hash) error {
	l := t.s.limits
	if t.files++; t.files > l.Files {
		return l.exceeded("files", int64(t.files), int64(l.Files))
	}
	blob, err := t.s.repo.BlobObject(h)
	if err != nil {
		return outcome.Failf(ReasonFetchFailed, "reading %s: %v", name, err)
	}
	if blob.Size > l.FileBytes {
		return outcome.Failf(ReasonLimitExceeded, "the repository exceeds the limit on bytes in one file: %s is %d bytes, at most %d", name, blob.Size, l.FileBytes)
	}
	if t.bytes += blob.Size; t.bytes > l.TreeBytes {
		return l.exceeded("bytes in all files", t.bytes, l.TreeBytes)
	}
	r, err := blob.Reader()
	if err != nil {
		return outcome.Failf(ReasonFetchFailed, "reading %s: %v", name, err)
	}
	defer r.Close()
	b, err := io.ReadAll(io.LimitReader(r, l.FileBytes+1))
	if err != nil {
		return outcome.Failf(ReasonFetchFailed, "reading %s: %v", name, err)
	}
	return t.fs.WriteFile("/"+name, b)
}

// resolve follows the symlink at name to the file it names, refusing
// anything outside the repository.
func (t *treeReader) resolve(name string) (plumbing.Hash, error) {
	at := name
	for range maxSymlinkHops {
		entry, err := t.root.FindEntry(at)
		if err != nil {
			return plumbing.ZeroHash, outcome.Failf(ReasonUnsafeContent, "symlink %s points to %s, which is not in the repository", name, at)
		}
		switch entry.Mode {
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			return entry.Hash, nil
		case filemode.Symlink:
		default:
			return plumbing.ZeroHash, outcome.Failf(ReasonUnsafeContent, "symlink %s points to the directory %s; only symlinks to files are read", name, at)
		}
		blob, err := t.s.repo.BlobObject(entry.Hash)
		if err != nil {
			return plumbing.ZeroHash, outcome.Failf(ReasonFetchFailed, "reading symlink %s: %v", at, err)
		}
		if blob.Size > 4096 {
			return plumbing.ZeroHash, outcome.Failf(ReasonUnsafeContent, "symlink %s has a %d-byte target", at, blob.Size)
		}
		r, err := blob.Reader()
		if err != nil {
			return plumbing.ZeroHash, outcome.Failf(ReasonFetchFailed, "reading symlink %s: %v", at, err)
		}
		target, err := io.ReadAll(io.LimitReader(r, 4096))
		_ = r.Close()
		if err != nil {
			return plumbing.ZeroHash, outcome.Failf(ReasonFetchFailed, "reading symlink %s: %v", at, err)
		}
		next, ok := within(path.Dir(at), string(target))
		if !ok {
			return plumbing.ZeroHash, outcome.Failf(ReasonUnsafeContent, "symlink %s points outside the repository (%s)", name, target)
		}
		at = next
	}
	return plumbing.ZeroHash, outcome.Failf(ReasonUnsafeContent, "symlink %s passes through more than %d symlinks", name, maxSymlinkHops)
}

// within joins a symlink target to the directory holding the link and
// reports whether the result stays inside the repository.
func within(dir, target string) (string, bool) {
	if target == "" || path.IsAbs(target) || strings.ContainsRune(target, 0) {
		return "", false
	}
	p := path.Clean(path.Join(dir, target))
	if p == "." || p == ".." || strings.HasPrefix(p, "../") {
		return "", false
	}
	return p, true
}
