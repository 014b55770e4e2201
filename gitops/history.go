package gitops

import (
	"context"
	"errors"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"

	"github.com/vigil-dev/vigil/outcome"
)

// History is the full history of some refs of one repository, fetched to
// answer which commits are reachable from which. It lives under a
// directory the caller owns and removes when done.
type History struct {
	URL  string
	repo *git.Repository
	// tips maps each fetched ref to the commit it names.
	tips   map[string]plumbing.Hash
	limits Limits
}

// FetchHistory downloads the whole history of refs (full names such as
// refs/heads/main or refs/tags/v1) into dir, within the same limits as
// Fetch: the pack's bytes, object count and object sizes are checked before
// go-git indexes it. A ref the server does not have is left out, not an
// error: nothing is reachable from it.
func FetchHistory(ctx context.Context, url string, auth transport.AuthMethod, refs []string, dir string, limits Limits) (*History, error) {
	repo, remote, err := guardedRepo(dir, url, limits)
	if err != nil {
		return nil, err
	}
	advertised, err := remote.ListContext(ctx, &git.ListOptions{Auth: auth, PeelingOption: git.AppendPeeled})
	if err != nil {
		return nil, classify(ctx, err, "listing the refs of "+url)
	}
	have := map[string]bool{}
	for _, r := range advertised {
		have[r.Name().String()] = true
	}
	var specs []config.RefSpec
	for _, ref := range refs {
		if have[ref] {
			specs = append(specs, config.RefSpec("+"+ref+":"+localRef(ref)))
		}
	}
	h := &History{URL: url, repo: repo, tips: map[string]plumbing.Hash{}, limits: limits}
	if len(specs) == 0 {
		return h, nil
	}
	err = remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Auth: auth, Tags: git.NoTags})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, classify(ctx, err, "fetching the history of "+url)
	}
	for _, ref := range refs {
		r, err := repo.Reference(plumbing.ReferenceName(localRef(ref)), true)
		if err != nil {
			continue
		}
		c, err := peel(repo, r.Hash())
		if err != nil {
			return nil, err
		}
		h.tips[ref] = c.Hash
	}
	return h, nil
}

func localRef(ref string) string {
	return "refs/vigil/" + strings.TrimPrefix(ref, "refs/")
}

// ReachableFrom says which of refs (in order) has commit in its history,
// or "" if none has. A commit given by a prefix shorter than a full hash is
// never matched.
func (h *History) ReachableFrom(commit string, refs []string) (string, error) {
	want, ok := fullHash(commit)
	if !ok {
		return "", nil
	}
	for _, ref := range refs {
		tip, ok := h.tips[ref]
		if !ok {
			continue
		}
		found, err := h.reaches(tip, want)
		if err != nil {
			return "", err
		}
		if found {
			return ref, nil
		}
	}
	return "", nil
}

// IsAncestor says whether commit is tip or one of its ancestors. tip must
// be in the fetched history; if it is not, the answer is an error.
func (h *History) IsAncestor(commit, tip string) (bool, error) {
	want, ok := fullHash(commit)
	if !ok {
		return false, nil
	}
	from, ok := fullHash(tip)
	if !ok {
		return false, outcome.Failf(ReasonRefNotFound, "%q is not a full commit hash", tip)
	}
	if _, err := h.repo.CommitObject(from); err != nil {
		return false, outcome.Failf(ReasonRefNotFound, "commit %s is not in the fetched history of %s", tip, h.URL)
	}
	return h.reaches(from, want)
}

// Snapshot is commit read from the fetched history, for a caller that
// needs its tree and need not fetch it again.
func (h *History) Snapshot(commit string) (*Snapshot, error) {
	hash, ok := fullHash(commit)
	if !ok {
		return nil, outcome.Failf(ReasonRefNotFound, "%q is not a full commit hash", commit)
	}
	c, err := peel(h.repo, hash)
	if err != nil {
		return nil, err
	}
	return &Snapshot{Commit: c.Hash.String(), repo: h.repo, commit: c, limits: h.limits}, nil
}

// reaches walks the commit graph from tip looking for want, visiting each
// commit once and at most as many as the limit on objects.
func (h *History) reaches(tip, want plumbing.Hash) (bool, error) {
	seen := map[plumbing.Hash]bool{}
	queue := []plumbing.Hash{tip}
	for len(queue) > 0 {
		next := queue[0]
		queue = queue[1:]
		if next == want {
			return true, nil
		}
		if seen[next] {
			continue
		}
		seen[next] = true
		if len(seen) > h.limits.Objects {
			return false, h.limits.exceeded("commits walked", int64(len(seen)), int64(h.limits.Objects))
		}
		c, err := h.repo.CommitObject(next)
		if errors.Is(err, plumbing.ErrObjectNotFound) {
			continue // the edge of a shallow history
		}
		if err != nil {
			return false, outcome.Failf(ReasonFetchFailed, "reading commit %s: %v", next, err)
		}
		queue = append(queue, c.ParentHashes...)
	}
	return false, nil
}

// fullHash parses a 40-character SHA-1 commit hash.
func fullHash(s string) (plumbing.Hash, bool) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) != 40 || !plumbing.IsHash(s) {
		return plumbing.ZeroHash, false
	}
	return plumbing.NewHash(s), true
}
