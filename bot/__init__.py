"""closedlost: makes every closed-lost deal leave a reason behind."""
