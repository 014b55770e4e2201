package gitops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/go-git/go-billy/v5/osfs"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/vigil-dev/vigil/outcome"
)

// Ref names exactly one of a branch, a tag or a commit.
type Ref struct {
	Branch, Tag, Commit string
}

func (r Ref) String() string {
	switch {
	case r.Commit != "":
		return "commit " + r.Commit
	case r.Tag != "":
		return "tag " + r.Tag
	default:
		return "branch " + r.Branch
	}
}

// Source is where to fetch from.
type Source struct {
	URL  string
	Ref  Ref
	Auth transport.AuthMethod
}

// Resolve asks the server which commit the ref names now, without
// fetching anything; a commit ref resolves to itself. A caller that
// already holds that commit need not fetch again.
func Resolve(ctx context.Context, src Source) (string, error) {
	if src.Ref.Commit != "" {
		return src.Ref.Commit, nil
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{src.URL}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{Auth: src.Auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", classify(ctx, err, "listing the refs of "+src.URL)
	}
	want := plumbing.NewBranchReferenceName(src.Ref.Branch)
	if src.Ref.Tag != "" {
		want = plumbing.NewTagReferenceName(src.Ref.Tag)
	}
	var direct, peeled string
	for _, r := range refs {
		switch r.Name() {
		case want:
			direct = r.Hash().String()
		case want + "^{}":
			peeled = r.Hash().String()
		}
	}
	switch {
	case peeled != "":
		return peeled, nil
	case direct != "":
		return direct, nil
	}
	return "", outcome.Failf(ReasonRefNotFound, "%s does not exist in %s", src.Ref, src.URL)
}

// Snapshot is one fetched commit, stored under a directory the caller owns
// and removes when done.
type Snapshot struct {
	// Commit is the full hash of the fetched commit.
	Commit string
	repo   *git.Repository
	commit *object.Commit
	limits Limits
}

// Fetch downloads the one commit the ref names, shallow (depth 1), without
// tags, into dir, enforcing limits while the pack streams in: its size, its
// object count and each object's inflated size are checked before go-git
// indexes it, so an oversized repository is refused without being held in
// memory.
func Fetch(ctx context.Context, src Source, dir string, limits Limits) (*Snapshot, error) {
	repo, remote, err := guardedRepo(dir, src.URL, limits)
	if err != nil {
		return nil, err
	}
	local := plumbing.ReferenceName("refs/vigil/fetched")
	var spec config.RefSpec
	switch {
	case src.Ref.Commit != "":
		spec = config.RefSpec(src.Ref.Commit + ":" + string(local))
	case src.Ref.Tag != "":
		spec = config.RefSpec("+" + string(plumbing.NewTagReferenceName(src.Ref.Tag)) + ":" + string(local))
	default:
		spec = config.RefSpec("+" + string(plumbing.NewBranchReferenceName(src.Ref.Branch)) + ":" + string(local))
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{spec},
		Depth:    1,
		Auth:     src.Auth,
		Tags:     git.NoTags,
	})
	switch {
	case errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, git.NoMatchingRefSpecError{}), errors.Is(err, git.ErrExactSHA1NotSupported),
		err != nil && strings.Contains(err.Error(), "not our ref"):
		return nil, outcome.Failf(ReasonRefNotFound, "%s is not in %s (%v)", src.Ref, src.URL, err)
	case err != nil:
		return nil, classify(ctx, err, "fetching "+src.Ref.String()+" of "+src.URL)
	}
	ref, err := repo.Reference(local, true)
	if err != nil {
		return nil, outcome.Failf(ReasonRefNotFound, "%s was not fetched from %s", src.Ref, src.URL)
	}
	commit, err := peel(repo, ref.Hash())
	if err != nil {
		return nil, err
	}
	return &Snapshot{Commit: commit.Hash.String(), repo: repo, commit: commit, limits: limits}, nil
}

// guardedRepo makes an empty repository in dir, with url as its origin,
// whose incoming packs are checked against limits before go-git indexes them.
func guardedRepo(dir, url string, limits Limits) (*git.Repository, *git.Remote, error) {
	st := &guardedStorage{
		Storage: filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(8<<20), filesystem.Options{}),
		dir:     dir,
		limits:  limits,
	}
	repo, err := git.Init(st, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("initialising a repository in %s: %w", dir, err)
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{url}})
	if err != nil {
		return nil, nil, outcome.Failf(ReasonFetchFailed, "bad repository URL: %v", err)
	}
	return repo, remote, nil
}

// peel follows an annotated tag to its commit.
func peel(repo *git.Repository, h plumbing.Hash) (*object.Commit, error) {
	for range 8 {
		obj, err := repo.Object(plumbing.AnyObject, h)
		if err != nil {
			return nil, outcome.Failf(ReasonFetchFailed, "reading object %s: %v", h, err)
		}
		switch o := obj.(type) {
		case *object.Commit:
			return o, nil
		case *object.Tag:
			h = o.Target
		default:
			return nil, outcome.Failf(ReasonRefNotFound, "%s names a %s, not a commit", h, obj.Type())
		}
	}
	return nil, outcome.Failf(ReasonRefNotFound, "tag chain at %s is too long", h)
}

// guardedStorage is go-git's filesystem storage with a pack writer that
// checks each incoming pack against the limits before handing it on.
type guardedStorage struct {
	*filesystem.Storage
	dir    string
	limits Limits
}

// PackfileWriter stages the pack in a file, so the limits are checked on
// a stream and not on an object graph in memory.
func (s *guardedStorage) PackfileWriter() (io.WriteCloser, error) {
	f, err := os.CreateTemp(s.dir, "incoming-*.pack")
	if err != nil {
		return nil, fmt.Errorf("staging the pack: %w", err)
	}
	return &packGuard{f: f, s: s}, nil
}

type packGuard struct {
	f *os.File
	s *guardedStorage
	n int64
}

func (g *packGuard) Write(p []byte) (int, error) {
	g.n += int64(len(p))
	if g.n > g.s.limits.PackBytes {
		return 0, g.s.limits.exceeded("bytes downloaded", g.n, g.s.limits.PackBytes)
	}
	return g.f.Write(p)
}

// Close checks the staged pack and, if it is within the limits, passes it
// to go-git to index.
func (g *packGuard) Close() (err error) {
	defer func() {
		_ = g.f.Close()
		_ = os.Remove(g.f.Name())
	}()
	if _, err := g.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := checkPack(g.f, g.s.limits); err != nil {
		return err
	}
	if _, err := g.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	w, err := g.s.Storage.PackfileWriter()
	if err != nil {
		return err
	}
	if _, err := io.Copy(w, g.f); err != nil {
		_ = w.Close()
		return err
	}
	return w.Close()
}

// checkPack reads a pack's headers and inflates each object into nothing,
// refusing it past the object count or an object's size limit. For a delta
// the size that matters is the object it rebuilds, which the delta's own
// header declares.
func checkPack(r io.Reader, l Limits) error {
	sc := packfile.NewScanner(r)
	_, count, err := sc.Header()
	if err != nil {
		return outcome.Failf(ReasonFetchFailed, "reading the pack header: %v", err)
	}
	if int64(count) > int64(l.Objects) {
		return l.exceeded("objects", int64(count), int64(l.Objects))
	}
	for range count {
		h, err := sc.NextObjectHeader()
		if err != nil {
			return outcome.Failf(ReasonFetchFailed, "reading the pack: %v", err)
		}
		if h.Length > l.FileBytes {
			return l.exceeded("bytes in one object", h.Length, l.FileBytes)
		}
		head := &prefix{max: 32}
		if _, _, err := sc.NextObject(head); err != nil {
			return outcome.Failf(ReasonFetchFailed, "reading the pack: %v", err)
		}
		if h.Type == plumbing.OFSDeltaObject || h.Type == plumbing.REFDeltaObject {
			if size := deltaTargetSize(head.b); size > l.FileBytes {
				return l.exceeded("bytes in one object", size, l.FileBytes)
			}
		}
	}
	return nil
}

// prefix keeps the first max bytes written to it and drops the rest.
type prefix struct {
	b   []byte
	max int
}

func (p *prefix) Write(b []byte) (int, error) {
	if room := p.max - len(p.b); room > 0 {
		p.b = append(p.b, b[:min(room, len(b))]...)
	}
	return len(b), nil
}

// deltaTargetSize reads the second of the two sizes a delta starts with
// (base size, then result size); an unreadable header counts as huge.
func deltaTargetSize(b []byte) int64 {
	_, rest, ok := varint(b)
	if !ok {
		return 1 << 62
	}
	size, _, ok := varint(rest)
	if !ok {
		return 1 << 62
	}
	return size
}

func varint(b []byte) (int64, []byte, bool) {
	var v int64
	for i, c := range b {
		if i >= 9 {
			return 0, nil, false
		}
		v |= int64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, b[i+1:], true
		}
	}
	return 0, nil, false
}
