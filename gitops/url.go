package gitops

import (
	"net/url"
	"strings"
)

// NormalizeURL reduces the ways to write a repository's address to one:
// host lower-cased, no scheme, user, port of the default, trailing slash
// or ".git". git@host:org/repo and https://host/org/repo.git are the same.
func NormalizeURL(raw string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	if !strings.Contains(raw, "://") {
		if at := strings.Index(raw, "@"); at >= 0 {
			if host, p, ok := strings.Cut(raw[at+1:], ":"); ok {
				raw = "ssh://" + raw[:at+1] + host + "/" + p
			}
		}
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return ""
	}
	host := strings.ToLower(u.Hostname())
	if port := u.Port(); port != "" && port != "22" && port != "80" && port != "443" && port != "9418" {
		host += ":" + port
	}
	p := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), ".git")
	return host + "/" + strings.TrimPrefix(p, "/")
}
