"""The package version, in a module of its own so that any layer can read it without importing the
package's public facade (``advrobust/__init__.py``). Keep it equal to ``version`` in pyproject.toml."""

__version__ = "0.1.0"
