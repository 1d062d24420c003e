"""The bcls version and the versions of the packages whose behaviour outputs depend on (for provenance)."""

from __future__ import annotations

from importlib import metadata

__version__ = "0.1.0"
"""The bcls version (``pyproject.toml`` holds the same string; a test checks that they agree)."""

PROVENANCE_PACKAGES: tuple[str, ...] = ("torch", "sentence-transformers", "faiss-cpu", "faiss-gpu", "pyarrow",
                                        "numpy", "dask")


def package_versions(packages: tuple[str, ...] = PROVENANCE_PACKAGES) -> dict[str, str]:
    """``{"bcls": version, package: version, ...}`` for the installed ones of ``packages``."""
    out = {"bcls": __version__}
    for pkg in packages:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out
