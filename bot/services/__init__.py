"""The product's operations as async functions; each owns its transaction."""
