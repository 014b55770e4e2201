package gitops

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/vigil-dev/vigil/outcome"
)

// Auth builds the credentials for url from a Secret's data: `username` and
// `password`, or `bearerToken`, for HTTP(S); `identity` (a PEM private
// key), `known_hosts` and an optional `password` for the key, for SSH.
// SSH without known_hosts is refused: a host key is always checked. Errors
// name the missing key, never a value.
func Auth(url string, data map[string][]byte) (transport.AuthMethod, error) {
	if data == nil {
		return nil, nil
	}
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, outcome.Failf(ReasonFetchFailed, "bad repository URL: %v", err)
	}
	get := func(k string) string { return strings.TrimSpace(string(data[k])) }
	switch ep.Protocol {
	case "http", "https":
		if tok := get("bearerToken"); tok != "" {
			return &githttp.TokenAuth{Token: tok}, nil
		}
		if get("password") == "" {
			return nil, outcome.Failf(ReasonAuthFailed, "the credentials Secret has neither `password` nor `bearerToken` for %s", ep.Protocol)
		}
		user := get("username")
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: get("password")}, nil
	case "ssh":
		id := data["identity"]
		if len(id) == 0 {
			return nil, outcome.Failf(ReasonAuthFailed, "the credentials Secret has no `identity` key for ssh")
		}
		hosts := data["known_hosts"]
		if len(bytes.TrimSpace(hosts)) == 0 {
			return nil, outcome.Failf(ReasonAuthFailed, "the credentials Secret has no `known_hosts` key; SSH host keys are always checked")
		}
		user := ep.User
		if user == "" {
			user = "git"
		}
		keys, err := gitssh.NewPublicKeys(user, id, get("password"))
		if err != nil {
			return nil, outcome.Failf(ReasonAuthFailed, "the `identity` key of the credentials Secret is not a usable private key")
		}
		cb, err := hostKeyCallback(hosts)
		if err != nil {
			return nil, err
		}
		keys.HostKeyCallback = cb
		return keys, nil
	}
	return nil, nil
}

// hostKeyCallback checks host keys against known_hosts lines. The x/crypto
// parser reads files only, so the lines pass through a private temporary
// file that is gone before the callback is used.
func hostKeyCallback(lines []byte) (ssh.HostKeyCallback, error) {
	f, err := os.CreateTemp("", "vigil-known-hosts-*")
	if err != nil {
		return nil, fmt.Errorf("staging known_hosts: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(lines); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("staging known_hosts: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("staging known_hosts: %w", err)
	}
	cb, err := knownhosts.New(f.Name())
	if err != nil {
		return nil, outcome.Failf(ReasonAuthFailed, "the `known_hosts` key of the credentials Secret is not valid: %v", err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		if err := cb(host, remote, key); err != nil {
			return outcome.Failf(ReasonAuthFailed, "the host key of %s (%s) is not in known_hosts", host, ssh.FingerprintSHA256(key))
		}
		return nil
	}, nil
}
