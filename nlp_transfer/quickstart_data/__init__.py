"""Small hand-written customer-review sentiment dataset bundled for the quickstart recipe."""
