"""An example cemasim plugin (docs/extending.md)."""
