"""The built-in optimizer plugins: one module per optimizer, registered through entry points."""
