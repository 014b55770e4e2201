# Vigil — see README.md. Every tool is built from pinned Go sources into a cache
# outside the checkout (hack/tools.sh); the first build takes tens of minutes.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec
.DEFAULT_GOAL := help

TOOLS := hack/tools.sh
CONTROLLER_GEN = $(shell $(TOOLS) dir controller-gen)/controller-gen
KUSTOMIZE = $(shell $(TOOLS) dir kustomize)/kustomize
DEV_CLUSTER_DIR ?= .dev-cluster
DEMO_DIR ?= .demo
GO_TEST_FLAGS ?= -count=1 -timeout 40m

.PHONY: help
help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: tools
tools: ## Build every missing tool from source into the tools cache
	@$(TOOLS) build

.PHONY: manifests
manifests: ## Generate CRDs and RBAC into config/ from the API markers
	@$(TOOLS) build controller-gen
	$(CONTROLLER_GEN) crd:maxDescLen=0,generateEmbeddedObjectMeta=true paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=manager paths=./... output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: ## Generate deep-copy functions of the API types
	@$(TOOLS) build controller-gen
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: verify
verify: ## Fail when generated files are stale, code is unformatted, or vet or go.mod is unhappy
	@hack/verify.sh

.PHONY: build
build: ## Build the manager, the kubectl plugin (bin/kubectl-vigil) and the dev-cluster command into bin/
	go build -o bin/ ./cmd/... ./hack/dev-cluster

.PHONY: install-yaml
install-yaml: ## Print the whole install (config/default) as YAML
	@$(TOOLS) build kustomize
	@$(KUSTOMIZE) build config/default

.PHONY: test
test: ## Build missing tools, verify, then run every suite: unit, envtest and end-to-end (e2e/)
	@$(TOOLS) build
	@hack/verify.sh
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" VIGIL_PROMETHEUS="$$($(TOOLS) dir prometheus)/prometheus" go test $(GO_TEST_FLAGS) ./...

.PHONY: fuzz
fuzz: ## Run many more generated Rollout histories than make test does (RAPID_CHECKS, default 50000)
	@$(TOOLS) build
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" VIGIL_PROMETHEUS="$$($(TOOLS) dir prometheus)/prometheus" RAPID_CHECKS=$${RAPID_CHECKS:-50000} \
		go test -count=1 -timeout 60m -run '^TestGeneratedHistories$$' -v ./controllers/rollout

.PHONY: dev-cluster
dev-cluster: ## Start a local control plane with kwok nodes; writes $(DEV_CLUSTER_DIR)/kubeconfig
	go run ./hack/dev-cluster up --dir $(DEV_CLUSTER_DIR) --bin-dir "$$($(TOOLS) assets)"

.PHONY: dev-cluster-down
dev-cluster-down: ## Stop every process the local control plane started
	go run ./hack/dev-cluster down --dir $(DEV_CLUSTER_DIR)

.PHONY: demo
demo: ## Tell Vigil's story (v1 stable, v2 promoted, v3 rolled back, v4 blocked) on a local cluster it starts
	@$(TOOLS) build
	@echo "demo: building vigil-controller and the demo"
	go build -o $(DEMO_DIR)/bin/ ./cmd/vigil-controller ./cmd/kubectl-vigil ./hack/demo
	@$(MAKE) --no-print-directory dev-cluster DEV_CLUSTER_DIR=$(DEMO_DIR)/cluster
	$(DEMO_DIR)/bin/demo up --dir $(DEMO_DIR) --kubeconfig $(DEMO_DIR)/cluster/kubeconfig --bin $(DEMO_DIR)/bin \
		--prometheus "$$($(TOOLS) dir prometheus)/prometheus" --crds config/crd/bases --role config/rbac/role.yaml --webhooks config/webhook/manifests.yaml --assets "$$($(TOOLS) assets)"

.PHONY: demo-down
demo-down: ## Stop every process make demo started
	go run ./hack/demo down --dir $(DEMO_DIR)
	@$(MAKE) --no-print-directory dev-cluster-down DEV_CLUSTER_DIR=$(DEMO_DIR)/cluster

.PHONY: bench
bench: ## Run the benchmarks against a real API server (figures go in docs/)
	@$(TOOLS) build
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" VIGIL_PROMETHEUS="$$($(TOOLS) dir prometheus)/prometheus" go test -count=1 -run '^$$' -bench NoOpReconcile -benchtime 5000x -benchmem -timeout 20m ./controllers/rollout
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" VIGIL_PROMETHEUS="$$($(TOOLS) dir prometheus)/prometheus" go test -count=1 -run '^$$' -bench 'SharedDigest|EvidencePerPromotion' -benchtime 1x -timeout 20m ./controllers/rollout
	go test -count=1 -run '^$$' -bench . -benchmem ./provenance
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" go test -count=1 -run '^$$' -bench Admission100Concurrent -benchtime 5x -timeout 10m ./controllers/approval
	KUBEBUILDER_ASSETS="$$($(TOOLS) assets)" VIGIL_PROMETHEUS="$$($(TOOLS) dir prometheus)/prometheus" go test -count=1 -run '^$$' -bench . -benchtime 1x -timeout 20m ./controllers/analysisrun ./controllers/gitsync
	@$(MAKE) --no-print-directory bench-cluster

BENCH_DIR ?= .bench
BENCH_FLAGS ?=

.PHONY: bench-cluster
bench-cluster: ## Time rollbacks and 1,000 releases on a local control plane with kwok nodes (docs/performance.md)
	@$(TOOLS) build
	go build -o $(BENCH_DIR)/bin/ ./cmd/vigil-controller ./cmd/kubectl-vigil ./hack/demo ./hack/bench
	@$(MAKE) --no-print-directory bench-down
	go run ./hack/dev-cluster up --dir $(BENCH_DIR)/cluster --bin-dir "$$($(TOOLS) assets)" --nodes 40 --api-qps 200
	$(BENCH_DIR)/bin/bench --dir $(BENCH_DIR) --kubeconfig $(BENCH_DIR)/cluster/kubeconfig --bin $(BENCH_DIR)/bin \
		--prometheus "$$($(TOOLS) dir prometheus)/prometheus" $(BENCH_FLAGS); status=$$?; \
		$(MAKE) --no-print-directory bench-down; exit $$status

.PHONY: bench-down
bench-down: ## Stop every process make bench-cluster started
	@go run ./hack/demo down --dir $(BENCH_DIR)
	@go run ./hack/dev-cluster down --dir $(BENCH_DIR)/cluster
