#!/usr/bin/env bash
# Fails when generated files are stale (regenerating them changed something),
# when Go code is not gofmt-formatted, when go vet complains, when go.mod or
# go.sum need tidying, or when the pinned dependency set stops compiling.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

generated() {
  find api config -type f \( -name 'zz_generated*.go' -o -path 'config/crd/bases/*' -o -path 'config/rbac/role.yaml' \) |
    sort | xargs sha256sum
}
before=$(generated)
make --no-print-directory -s manifests generate >/dev/null
after=$(generated)
if [[ $before != "$after" ]]; then
  echo "verify: generated files were stale and have been regenerated; review and commit them:" >&2
  diff <(echo "$before") <(echo "$after") >&2 || true
  exit 1
fi

unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.git/*'))
if [[ -n $unformatted ]]; then
  echo "verify: not gofmt-formatted (run gofmt -w):" >&2
  echo "$unformatted" >&2
  exit 1
fi

if ! go mod tidy -diff >/dev/null; then
  echo "verify: go.mod/go.sum need tidying (run go mod tidy):" >&2
  go mod tidy -diff >&2 || true
  exit 1
fi
for d in hack/tools/*/; do
  if ! (cd "$d" && go mod tidy -diff >/dev/null); then
    echo "verify: $d needs go mod tidy" >&2
    exit 1
  fi
done

go vet ./...
echo "verify: ok"
