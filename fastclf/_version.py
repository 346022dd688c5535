"""The package version, in a module of its own so that fastclf's modules never import the package back."""

__version__ = "0.1.0"
