"""Background jobs: the policy update from feedback, the job runner and the scheduler."""
