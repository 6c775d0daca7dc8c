"""streamwreck.deploy: getting streamwreck onto AWS and checking what describes it.

- stacks: the CloudFormation stacks of cfn/ in order, the images pushed in between (``make deploy``;
  ``python -m streamwreck.deploy.stacks``).
- iac: the deploy files (templates, compose file, Dockerfiles) as data, the variables each deployable takes (from
  its settings class), and the linters that check them; tests/iac/ stands on it.
- compose_init: docker-compose's one-shot creation of the pipeline's resources in LocalStack.
"""
