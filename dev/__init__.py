"""Development tooling of dropship (see README.md); `dev.harness` is the e2e tier's shared harness."""
