"""fmnist-bench's suite: pytest-benchmark families, machine facts, saved runs and reports."""
