# deploy.mk: streamwreck on AWS (CloudFormation + ECS Fargate) and the tools that validate the deploy files.
# Included by the Makefile. Needs AWS credentials (boto3's usual: AWS_PROFILE, AWS_DEFAULT_REGION, ...) and Docker
# for the images. Example:
#   make deploy DEPLOY_PREFIX=acme DEPLOY_PARAMS="messaging.ShardCount=4 services.SkipEvery=0"
#   make deploy-outputs      # the API endpoint among them
#   make check-aws           # run the checker once inside the VPC
#   make destroy DEPLOY_PREFIX=acme

DEPLOY_PREFIX ?= streamwreck
DEPLOY_STREAM ?= $(DEPLOY_PREFIX)
DEPLOY_PARAMS ?=
DEPLOY_ONLY ?=
IMAGE_TAG ?=
DEPLOY := $(PY) -m streamwreck.deploy.stacks --prefix $(DEPLOY_PREFIX) $(if $(DEPLOY_ONLY),--only $(DEPLOY_ONLY))

# checkov pins its own dependencies (boto3, packaging, networkx) apart from ours: it gets a venv of its own, built
# again only when the pin changes (the stamp names the version).
IAC_VENV := build/iac-venv
CHECKOV_VERSION := 3.3.30
IAC_DONE := $(IAC_VENV)/.checkov-$(CHECKOV_VERSION)

.PHONY: deploy destroy deploy-outputs check-aws iac-tools test-iac

deploy: venv ## deploy to AWS: network, ledger, messaging, registry, images, services (DEPLOY_PREFIX, DEPLOY_PARAMS)
	$(DEPLOY) deploy --stream $(DEPLOY_STREAM) $(if $(IMAGE_TAG),--image-tag $(IMAGE_TAG)) \
	    $(foreach param,$(DEPLOY_PARAMS),--param $(param))

deploy-outputs: venv ## print the deployed stacks' outputs (ApiEndpoint among them)
	$(DEPLOY) outputs

check-aws: venv ## run `streamwreck check` once as a Fargate task in the deployed VPC and print its report
	$(DEPLOY) check

destroy: venv ## delete the deployed stacks in reverse order, and the KCL application's DynamoDB tables
	$(DEPLOY) destroy

$(IAC_DONE):
	rm -rf $(IAC_VENV)
	$(PYTHON) -m venv $(IAC_VENV)
	$(IAC_VENV)/bin/pip install -q 'checkov==$(CHECKOV_VERSION)'
	touch $@

iac-tools: $(IAC_DONE) ## checkov in its own venv (build/iac-venv), for the IaC checks (tests/iac)

test-iac: venv iac-tools ## the deploy files' checks: cfn-lint, checkov, hadolint, compose schema, settings wiring
	$(BIN)/pytest tests/iac $(PYTEST_ARGS)

# `make test` installs it too (through test-deps).
