# `docker compose up`, for real (included by the Makefile). See docs/deploy.md ("How the compose test runs").
.PHONY: compose-test compose-engine-stop compose-cache-clean

compose-test: venv ## build the images, run docker-compose.yml, check that exactly the skipped records are lost
	$(BIN)/pytest tests/compose -m compose -p no:cacheprovider --durations=5 $(PYTEST_ARGS)

compose-engine-stop: ## stop the private dockerd a failed compose test may have left running
	scripts/compose/dockerd.sh stop

compose-cache-clean: compose-engine-stop ## forget the cached compose binary, stand-in bases and image store (~/.cache/streamwreck)
	rm -rf $(HOME)/.cache/streamwreck/compose $(HOME)/.cache/streamwreck/docker
