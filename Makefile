# The two commands a newcomer needs (see README): `make demo` and `make test`.
.PHONY: demo test stack stack-deployed bootstrap lambda-build clean-local bench bench-idle bench-tick bench-mapping

demo: ## Run the whole flow locally against the sandboxes and print what it did
	infra/demo.sh

test: ## Format, lint, unit + end-to-end tests on real local servers, template validation
	infra/test.sh

stack: ## Serve the service API on 127.0.0.1:$${SERVICE_PORT:-9000} with moto + sandboxes (Ctrl-C stops)
	infra/stack.sh

stack-deployed: ## The deployed topology: the five Lambda binaries as processes, wired by template.yaml (Ctrl-C stops)
	infra/bootstrap.sh stack
	cargo build -p functions -p local-stack --bins
	target/debug/local-stack deployed

bootstrap: ## Install the project venvs (moto, cfn-lint, cargo-lambda)
	infra/bootstrap.sh all

lambda-build: bootstrap ## Build every Lambda for arm64 with cargo-lambda (target/lambda/<fn>/bootstrap)
	PATH="$(CURDIR)/.venv/tools/bin:$$PATH" cargo lambda build --release --arm64 --bins -p functions

clean-local: ## Remove local state (venvs stay)
	rm -rf .local

bench: ## Sync benchmark: large café, 100 ms KiotViet / 30 ms Abaha latency, AWS cost counted (BENCH_STORE=memory|moto, BENCH_MOTO=stock, BENCH_METER=0, BENCH_SIZE)
	infra/bootstrap.sh $$( [ "$${BENCH_MOTO:-}" = stock ] && echo stock || echo stack )
	cargo build --profile perf -p local-stack -p sandbox --bins
	target/perf/local-stack bench

bench-idle: ## Cost of an idle 15-minute tick (small café): DynamoDB/KMS/SQS/token/invocations counted on the wire, $ per shop-month (BENCH_MOTO=stock)
	infra/bootstrap.sh $$( [ "$${BENCH_MOTO:-}" = stock ] && echo stock || echo stack )
	cargo build -p local-stack --bins
	target/debug/local-stack bench-idle

bench-tick: ## One scheduler tick over SHOPS small shops (default 1000) on moto: run states, wall time, slowest shop, GET budgets, fan-out cost
	infra/bootstrap.sh stack
	cargo build -p local-stack --bins
	TICK_SHOPS=$${SHOPS:-1000} target/debug/local-stack bench-tick

bench-mapping: ## Mapping micro-benchmark (criterion): decode + map + content hash, records/s on one core
	cargo bench -p mapping --bench mapping
